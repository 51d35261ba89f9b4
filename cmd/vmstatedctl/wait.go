package main

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmstated/vmstated/api"
)

// goal is what waitFor waits for.
type goal struct {
	// target is the state to reach; "" means any steady state (stopped,
	// running, paused, failed).
	target api.State
	// needMove makes the target count only when a transition reaches it
	// (restart: the VM is running before and after).
	needMove bool
	// quiet hides the states as they pass.
	quiet bool
}

var progressMu sync.Mutex

// waitFor subscribes to the VM's events, then runs act (when not nil), and
// follows the VM until the goal is met. It fails with the reason when the
// VM ends in failed (unless that is the goal), stops while a start is
// awaited, or is removed. Passing states are shown as they come.
func (e *env) waitFor(name string, g goal, act func() error) (api.Status, error) {
	c := e.client()
	s, err := c.Events(e.ctx, api.EventOptions{VM: name})
	if err != nil {
		return api.Status{}, err
	}
	defer func() { s.Close() }()
	var before api.Status
	if act != nil {
		// Read after the stream began: a move since is in the stream.
		before, _ = c.Get(e.ctx, name)
		if err := act(); err != nil {
			return api.Status{}, err
		}
	}
	st, err := c.Get(e.ctx, name)
	if errors.Is(err, api.ErrNotFound) && act != nil && (g.target == api.StateStopped || g.target == "") {
		// Found before the action and gone after it: its directory was
		// gone, the action brought it to rest at once, and the daemon
		// dropped it there.
		before.State, before.Desired = api.StateStopped, api.StateStopped
		if !g.quiet && !e.json() {
			progressMu.Lock()
			fmt.Fprintf(e.stdout, "%s: %s (and dropped: its directory is gone)\n", name, before.State)
			progressMu.Unlock()
		}
		return before, nil
	}
	if err != nil {
		return st, err
	}
	if done, err := g.check(st, false); done || err != nil {
		if act != nil && !st.Since.Equal(before.Since) && !g.quiet && !e.json() {
			// It got there already (a quick start that failed, a quick
			// stop), after the stream began: show the states it passed.
			e.showPassed(s, name, st)
			return st, err
		}
		// Settled before any event was read: say where it ended.
		if err == nil && !g.quiet && !e.json() {
			progressMu.Lock()
			fmt.Fprintf(e.stdout, "%s: %s\n", name, st.State)
			progressMu.Unlock()
		}
		return st, err
	}
	// shown is set once a line about the VM was printed; a wait that
	// ends on a hook's end (the VM was in its state already, its hook
	// still running) says where it ended all the same.
	shown := false
	// settled ends the wait with the VM's full status, when it is still
	// in the state the events brought it to.
	settled := func(err error) (api.Status, error) {
		if fresh, gerr := c.Get(e.ctx, name); gerr == nil && fresh.State == st.State {
			st = fresh
		}
		if !shown && err == nil && !g.quiet && !e.json() {
			progressMu.Lock()
			fmt.Fprintf(e.stdout, "%s: %s\n", name, st.State)
			progressMu.Unlock()
		}
		return st, err
	}
	for {
		ev, err := s.Next()
		if err != nil {
			if e.ctx.Err() != nil {
				return st, e.ctx.Err()
			}
			if !errors.Is(err, io.EOF) {
				return st, err
			}
			// The daemon ended the stream (this reader was slow): resume
			// and re-read the status for whatever was missed.
			last := s.Last
			s.Close()
			next, err := c.Events(e.ctx, api.EventOptions{VM: name, After: last})
			if err != nil {
				// s stays the closed stream: the deferred Close is a no-op.
				return st, err
			}
			s = next
			ev = api.Event{Kind: api.KindLost}
		}
		switch ev.Kind {
		case api.KindLost:
			if st, err = c.Get(e.ctx, name); err != nil {
				return st, err
			}
			if done, err := g.check(st, true); done || err != nil {
				return st, err
			}
		case api.KindConfig:
			// Removed: its directory is gone; dropped: it came to rest
			// so, and the daemon forgot it (no more events come).
			if ev.Reason == "removed" || ev.Reason == "dropped" {
				if g.target == api.StateStopped || g.target == "" {
					st.State = api.StateStopped
					return st, nil
				}
				return st, fmt.Errorf("%s was removed (its config directory is gone)", name)
			}
		case api.KindHook:
			// The hook the VM waited for in its state finished; a failure
			// is followed by the transition it causes.
			// The hooks of stopped and failed move nothing either way.
			resting := ev.To == api.StateStopped || ev.To == api.StateFailed || ev.To == api.StateSuspended
			if (ev.Reason == "" || resting) && ev.To == st.State && st.Hook == ev.To {
				st.Hook = ""
				if done, err := g.check(st, true); done || err != nil {
					return settled(err)
				}
			}
		case api.KindTransition:
			if !g.quiet && !e.json() {
				e.showTransition(name, ev)
				shown = true
			}
			st.State, st.Reason, st.Since = ev.To, ev.Reason, ev.Time
			if ev.To == api.StateStopped || ev.To == api.StateFailed {
				st.Desired = api.StateStopped
			}
			if ev.To.Steady() {
				// Up, or settled, only once the state's hook has
				// finished: ask.
				fresh, gerr := c.Get(e.ctx, name)
				switch {
				case gerr == nil && fresh.State == ev.To:
					st.Hook, st.Recovering = fresh.Hook, fresh.Recovering
				case errors.Is(gerr, api.ErrNotFound):
					// Dropped as it came to rest (its directory is
					// gone): nothing more happens to it.
					st.Hook = ""
				default:
					st.Hook = ev.To
				}
			}
			if done, err := g.check(st, true); done || err != nil {
				return settled(err)
			}
		case api.KindProgress:
			if !g.quiet && !e.json() {
				progressMu.Lock()
				fmt.Fprintf(e.stdout, "%s: %s\n", name, ev.Reason)
				progressMu.Unlock()
				shown = true
			}
		case api.KindAdopted:
			// Taken over after a daemon restart: no longer recovering.
			if fresh, gerr := c.Get(e.ctx, name); gerr == nil && fresh.State == st.State {
				st.Hook, st.Recovering = fresh.Hook, fresh.Recovering
				if done, err := g.check(st, false); done || err != nil {
					return settled(err)
				}
			}
		}
	}
}

// check says whether st meets the goal, or can no longer meet it. moved
// tells whether st comes from a transition seen since the wait began.
func (g goal) check(st api.Status, moved bool) (bool, error) {
	if st.Recovering {
		return false, nil // its state is not yet confirmed
	}
	if g.target == "" {
		if !st.State.Steady() || (st.Hook != "" && st.State != api.StateFailed) {
			return false, nil
		}
		if st.State == api.StateFailed {
			return true, failedErr(st)
		}
		return true, nil
	}
	if st.State == g.target && (moved || !g.needMove) {
		// A start is done once the VM is up: running with its running
		// hook finished; a stop once the stopped hook has finished.
		return st.Hook == "", nil
	}
	if st.State == api.StateFailed && g.target != api.StateFailed {
		return true, failedErr(st)
	}
	// A suspend whose save failed leaves the guest running (or paused,
	// as it was); the reason says which.
	if moved && g.target == api.StateSuspended && (st.State == api.StateRunning || st.State == api.StatePaused) {
		return true, fmt.Errorf("%s was not suspended: %s", st.Name, st.Reason)
	}
	// A VM waiting for the VMs it depends on is stopped but wants to run.
	if moved && g.target == api.StateRunning && st.State == api.StateStopped && st.Desired != api.StateRunning {
		why := ""
		if st.Reason != "" {
			why = ": " + st.Reason
		}
		return true, fmt.Errorf("%s stopped instead of running%s; see 'vmstatedctl log %s'", st.Name, why, st.Name)
	}
	return false, nil
}

func failedErr(st api.Status) error {
	why := st.Reason
	if why == "" {
		why = "no reason recorded"
	}
	return fmt.Errorf("%s failed: %s; see 'vmstatedctl log %s', then 'vmstatedctl failreset %s'", st.Name, why, st.Name, st.Name)
}

// showTransition prints one state a wait sees the VM pass.
func (e *env) showTransition(name string, ev api.Event) {
	progressMu.Lock()
	defer progressMu.Unlock()
	line := fmt.Sprintf("%s: %s", name, ev.To)
	if ev.Reason != "" {
		line += " (" + ev.Reason + ")"
	}
	fmt.Fprintln(e.stdout, line)
}

// showPassed prints the transitions the stream holds up to the first into
// st's state: the VM moved after the stream began, so that one is in it.
func (e *env) showPassed(s *api.EventStream, name string, st api.Status) {
	for {
		ev, err := s.Next()
		if err != nil {
			return
		}
		if ev.Kind != api.KindTransition {
			continue
		}
		e.showTransition(name, ev)
		if ev.To == st.State {
			return
		}
	}
}
