package main

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/statemachine"
)

// goal is what waitFor waits for.
type goal struct {
	// target is the state to reach; "" means any steady state (stopped,
	// running, paused, failed).
	target statemachine.State
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
	if act != nil {
		if err := act(); err != nil {
			return api.Status{}, err
		}
	}
	st, err := c.Get(e.ctx, name)
	if err != nil {
		return st, err
	}
	if done, err := g.check(st, false); done || err != nil {
		// Settled before any event was read (a quick stop): say where it
		// ended, since the states it passed are not shown.
		if err == nil && !g.quiet && !e.json() {
			progressMu.Lock()
			fmt.Fprintf(e.stdout, "%s: %s\n", name, st.State)
			progressMu.Unlock()
		}
		return st, err
	}
	// settled ends the wait with the VM's full status, when it is still
	// in the state the events brought it to.
	settled := func(err error) (api.Status, error) {
		if fresh, gerr := c.Get(e.ctx, name); gerr == nil && fresh.State == st.State {
			st = fresh
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
			if ev.Reason == "removed" {
				if g.target == statemachine.Stopped || g.target == "" {
					st.State = statemachine.Stopped
					return st, nil
				}
				return st, fmt.Errorf("%s was removed (its config directory is gone)", name)
			}
		case api.KindHook:
			// The hook the VM waited for in its state finished; a failure
			// is followed by the transition it causes.
			// The hooks of stopped and failed move nothing either way.
			resting := ev.To == statemachine.Stopped || ev.To == statemachine.Failed
			if (ev.Reason == "" || resting) && ev.To == st.State && st.Hook == ev.To {
				st.Hook = ""
				if done, err := g.check(st, true); done || err != nil {
					return settled(err)
				}
			}
		case api.KindTransition:
			if !g.quiet && !e.json() {
				progressMu.Lock()
				line := fmt.Sprintf("%s: %s", name, ev.To)
				if ev.Reason != "" {
					line += " (" + ev.Reason + ")"
				}
				fmt.Fprintln(e.stdout, line)
				progressMu.Unlock()
			}
			st.State, st.Reason, st.Since = ev.To, ev.Reason, ev.Time
			if ev.To == statemachine.Stopped || ev.To == statemachine.Failed {
				st.Desired = statemachine.Stopped
			}
			if ev.To.Steady() {
				// Up, or settled, only once the state's hook has
				// finished: ask.
				if fresh, gerr := c.Get(e.ctx, name); gerr == nil && fresh.State == ev.To {
					st.Hook, st.Recovering = fresh.Hook, fresh.Recovering
				} else {
					st.Hook = ev.To
				}
			}
			if done, err := g.check(st, true); done || err != nil {
				return settled(err)
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
		if !st.State.Steady() || (st.Hook != "" && st.State != statemachine.Failed) {
			return false, nil
		}
		if st.State == statemachine.Failed {
			return true, failedErr(st)
		}
		return true, nil
	}
	if st.State == g.target && (moved || !g.needMove) {
		// A start is done once the VM is up: running with its running
		// hook finished; a stop once the stopped hook has finished.
		return st.Hook == "", nil
	}
	if st.State == statemachine.Failed && g.target != statemachine.Failed {
		return true, failedErr(st)
	}
	// A VM waiting for the VMs it depends on is stopped but wants to run.
	if moved && g.target == statemachine.Running && st.State == statemachine.Stopped && st.Desired != statemachine.Running {
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
