package supervisor

import (
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/statemachine"
)

// Sync brings the registry in line with a freshly loaded config root: new
// VMs are added (stopped), changed ones get their new config (now when
// stopped, at the next start when running), broken ones keep their old
// config and show the errors, and VMs whose directory is gone are dropped
// once stopped.
func (s *Supervisor) Sync(snap *config.Snapshot) {
	if snap.RootErr != nil {
		// The root itself is unreadable: changing nothing is the only
		// safe reading.
		s.logf("config root %s: %v; keeping the current VMs", snap.Root, snap.RootErr)
		return
	}
	seen := make(map[string]bool)
	for name, c := range snap.VMs {
		seen[name] = true
		s.apply(name, settingsFrom(c), "", false)
	}
	for _, inv := range snap.Invalid {
		if inv.Name == "" || seen[inv.Name] {
			continue
		}
		seen[inv.Name] = true
		s.apply(inv.Name, nil, inv.Diagnostics.Errors().Error(), false)
	}
	s.mu.Lock()
	var gone []string
	for name := range s.vms {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	for _, name := range gone {
		s.apply(name, nil, "", true)
	}
}

// Apply handles one change reported by the config watcher.
func (s *Supervisor) Apply(ch config.Change) {
	switch ch.Kind {
	case config.Added, config.Changed:
		s.apply(ch.Name, settingsFrom(ch.VM), "", false)
	case config.Invalid:
		s.apply(ch.Name, nil, ch.Diagnostics.Errors().Error(), false)
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
	// The actor says whether anything changed: a rescan hands every VM
	// its config again.
	_ = v.send(s.ctx, configUpdate{cfg: cfg, errText: errText, removed: removed})
}
