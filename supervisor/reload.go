package supervisor

import (
	"context"
	"sort"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/statemachine"
)

// Configs reach the VMs by one path: Load takes the first snapshot (and
// what an earlier daemon left), then Follow applies every change the
// config watcher reports, whether the watcher saw a file change or a
// rescan was asked for (SIGHUP, POST /v1/reload). Reload asks for a
// rescan and returns once its changes have reached every VM.

// ReloadSummary says what a rescan changed.
type ReloadSummary struct {
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Invalid maps the VMs whose config did not load to the errors; a
	// VM's previous config stays in force.
	Invalid map[string]string `json:"invalid,omitempty"`
}

func (r *ReloadSummary) note(ch config.Change) {
	switch ch.Kind {
	case config.Added:
		r.Added = append(r.Added, ch.Name)
	case config.Changed:
		r.Changed = append(r.Changed, ch.Name)
	case config.Removed:
		r.Removed = append(r.Removed, ch.Name)
	case config.Invalid:
		if r.Invalid == nil {
			r.Invalid = map[string]string{}
		}
		name := ch.Name
		if name == "" {
			name = ch.Dir
		}
		r.Invalid[name] = ch.Diagnostics.Errors().Error()
	}
}

func (r *ReloadSummary) sort() {
	sort.Strings(r.Added)
	sort.Strings(r.Changed)
	sort.Strings(r.Removed)
}

// reloadWaiter is a Reload waiting for the scan that answers request n.
type reloadWaiter struct {
	n     uint64
	reply chan reloadAnswer
}

type reloadAnswer struct {
	sum ReloadSummary
	err error
}

// Follow applies config changes until the channel closes (the watcher has
// stopped). Run it once, after Load.
func (s *Supervisor) Follow(changes <-chan config.Change) {
	var sum ReloadSummary
	for ch := range changes {
		if ch.Kind == config.Scanned {
			// Every change of the scan was handed to its VM; once each
			// actor has handled its inbox up to here, they are in
			// effect.
			s.barrier()
			sum.sort()
			s.answerReloads(ch.Scan, reloadAnswer{sum: sum, err: ch.Err})
			sum = ReloadSummary{}
			continue
		}
		sum.note(ch)
		s.applyChange(ch)
	}
	s.answerReloads(^uint64(0), reloadAnswer{err: ErrShuttingDown})
}

// Reload asks for a rescan through request (the watcher's Request) and
// waits until the changes it found have reached the VMs.
func (s *Supervisor) Reload(ctx context.Context, request func() uint64) (ReloadSummary, error) {
	w := reloadWaiter{reply: make(chan reloadAnswer, 1)}
	// Under the lock, so that the answer cannot come between the
	// request and the registration.
	s.reloadMu.Lock()
	w.n = request()
	s.reloads = append(s.reloads, w)
	s.reloadMu.Unlock()
	select {
	case a := <-w.reply:
		return a.sum, a.err
	case <-ctx.Done():
		return ReloadSummary{}, ctx.Err()
	}
}

// answerReloads answers every Reload whose request number is at most n.
func (s *Supervisor) answerReloads(n uint64, a reloadAnswer) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	keep := s.reloads[:0]
	for _, w := range s.reloads {
		if w.n <= n {
			w.reply <- a
		} else {
			keep = append(keep, w)
		}
	}
	s.reloads = keep
}

// barrier waits until every actor has handled the messages sent to it so
// far.
func (s *Supervisor) barrier() {
	s.mu.Lock()
	vms := make([]*vm, 0, len(s.vms))
	for _, v := range s.vms {
		vms = append(vms, v)
	}
	s.mu.Unlock()
	for _, v := range vms {
		done := make(chan struct{})
		if v.send(s.ctx, inspect{fn: func() {}, done: done}) != nil {
			continue // dropped or shutting down
		}
		select {
		case <-done:
		case <-v.done:
		case <-s.ctx.Done():
			return
		}
	}
}

// applyChange hands one change reported by the config watcher to its VM.
func (s *Supervisor) applyChange(ch config.Change) {
	switch ch.Kind {
	case config.Added, config.Changed:
		s.apply(ch.Name, settingsFrom(ch.VM), "", false)
	case config.Invalid:
		if ch.Name != "" {
			s.apply(ch.Name, nil, ch.Diagnostics.Errors().Error(), false)
		}
	case config.Removed:
		s.apply(ch.Name, nil, "", true)
	}
}

// apply hands a config change to a VM's actor, creating the actor for a
// new VM.
func (s *Supervisor) apply(name string, cfg *settings, errText string, removed bool) {
	s.mu.Lock()
	v, ok := s.vms[name]
	s.mu.Unlock()
	if !ok {
		if removed {
			return
		}
		s.add(name, cfg, errText, statemachine.Stopped)
		kind := "added"
		if cfg == nil {
			kind = "invalid: " + errText
		}
		s.bus.Publish(Event{Kind: KindConfig, VM: name, Reason: kind})
		return
	}
	// The actor says whether anything changed.
	_ = v.send(s.ctx, configUpdate{cfg: cfg, errText: errText, removed: removed})
}
