package statemachine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// allowed is the lifecycle written out by hand, independently of Table:
// every (state, event) pair not listed here must be refused.
var allowed = map[State]map[Event]State{
	Stopped:      {Start: StartNetwork, Fail: Failed, Saved: Suspended},
	StartNetwork: {Done: StartStorage, Fail: Failed, Abort: StopNetwork},
	StartStorage: {Done: Running, Fail: StopNetwork, Abort: StopStorage},
	Running: {Stop: Stopping, Exited: Stopping, Fail: Stopping, AutoRestart: Restarting,
		Restart: Restarting, Pause: Paused, Suspend: Suspending},
	Paused: {Stop: Stopping, Exited: Stopping, Fail: Stopping, AutoRestart: Restarting,
		Restart: Restarting, Unpause: Running, Suspend: Suspending},
	Restarting: {Done: Restarted, Fail: StopStorage, Abort: StopStorage},
	Restarted: {Done: Running, Stop: Stopping, Exited: Stopping, Fail: Stopping,
		AutoRestart: Restarting, Restart: Restarting},
	Stopping:    {Done: StopStorage, Fail: StopStorage},
	StopStorage: {Done: StopNetwork, Fail: StopNetwork},
	StopNetwork: {Done: Stopped, Fail: Failed, Saved: Suspended},
	Failed:      {FailReset: Stopped, Discard: Stopped, Saved: Suspended},
	Suspending:  {Done: StopStorage, Fail: StopStorage, Abort: Running},
	Suspended:   {Start: StartNetwork, Discard: Stopped},
}

func TestEveryStateEventPair(t *testing.T) {
	for _, s := range States {
		for _, e := range Events {
			want, ok := allowed[s][e]
			t.Run(string(s)+"/"+string(e), func(t *testing.T) {
				m := New(Options{Name: "vm0", Initial: s, MaxRestart: 3, MaxRestartTime: 30 * time.Second})
				if got := m.Can(e); got != ok {
					t.Fatalf("Can(%s) in %s = %v, want %v", e, s, got, ok)
				}
				tr, err := m.Fire(e, "")
				if !ok {
					var na *NotAllowedError
					if !errors.As(err, &na) || !errors.Is(err, ErrNotAllowed) {
						t.Fatalf("Fire(%s) in %s: err = %v, want NotAllowedError", e, s, err)
					}
					if m.State() != s {
						t.Fatalf("refused event moved the machine to %s", m.State())
					}
					return
				}
				if err != nil {
					t.Fatalf("Fire(%s) in %s: %v", e, s, err)
				}
				if tr.From != s || tr.To != want || m.State() != want {
					t.Fatalf("Fire(%s) in %s: transition %+v, state %s, want -> %s", e, s, tr, m.State(), want)
				}
			})
		}
	}
}

func TestNotAllowedMessage(t *testing.T) {
	tests := []struct {
		state State
		event Event
		want  string
	}{
		{Stopped, Stop, "cannot stop vm0: it is stopped"},
		{Running, Start, "cannot start vm0: it is running"},
		{Failed, Start, "cannot start vm0: it is failed; run 'vmstatedctl failreset vm0' first"},
		{StartStorage, Pause, "cannot pause vm0: it is start_storage; try again when it has settled"},
	}
	for _, tt := range tests {
		m := New(Options{Name: "vm0", Initial: tt.state})
		_, err := m.Fire(tt.event, "")
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s in %s: got %v, want %q", tt.event, tt.state, err, tt.want)
		}
	}
}

// walk fires events in order and checks the states passed through.
func walk(t *testing.T, m *Machine, steps ...any) {
	t.Helper()
	for i := 0; i < len(steps); i += 2 {
		e, want := steps[i].(Event), steps[i+1].(State)
		if _, err := m.Fire(e, ""); err != nil {
			t.Fatalf("step %d: %s: %v", i/2, e, err)
		}
		if m.State() != want {
			t.Fatalf("step %d: after %s in state %s, want %s", i/2, e, m.State(), want)
		}
	}
}

func TestPaths(t *testing.T) {
	start := []any{Start, StartNetwork, Done, StartStorage, Done, Running}
	teardown := []any{Done, StopStorage, Done, StopNetwork}
	cat := func(parts ...[]any) []any {
		var out []any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name    string
		steps   []any
		failing bool
	}{
		{"start and stop", cat(start, []any{Stop, Stopping}, teardown, []any{Done, Stopped}), false},
		{"guest poweroff", cat(start, []any{Exited, Stopping}, teardown, []any{Done, Stopped}), false},
		{"guest reboot skips network and storage", cat(start, []any{AutoRestart, Restarting, Done, Restarted, Done, Running}), false},
		{"user restart", cat(start, []any{Restart, Restarting, Done, Restarted, Done, Running}), false},
		{"pause and unpause", cat(start, []any{Pause, Paused, Unpause, Running}), false},
		{"stop while paused", cat(start, []any{Pause, Paused, Stop, Stopping}, teardown, []any{Done, Stopped}), false},
		{"stop asked during start_network", []any{Start, StartNetwork, Abort, StopNetwork, Done, Stopped}, false},
		{"stop asked during start_storage", []any{Start, StartNetwork, Done, StartStorage, Abort, StopStorage, Done, StopNetwork, Done, Stopped}, false},
		{"start_network hook fails", []any{Start, StartNetwork, Fail, Failed}, true},
		{"start_storage hook fails: network torn down", []any{Start, StartNetwork, Done, StartStorage, Fail, StopNetwork, Done, Failed}, true},
		{"launch fails: storage and network torn down", []any{Start, StartNetwork, Done, StartStorage, Abort, StopStorage, Done, StopNetwork, Done, Failed}, true},
		{"running hook fails", cat(start, []any{Fail, Stopping}, teardown, []any{Done, Failed}), true},
		{"relaunch fails", cat(start, []any{AutoRestart, Restarting, Fail, StopStorage, Done, StopNetwork, Done, Failed}), true},
		{"restarted hook fails", cat(start, []any{AutoRestart, Restarting, Done, Restarted, Fail, Stopping}, teardown, []any{Done, Failed}), true},
		{"stopping hook fails: teardown goes on", cat(start, []any{Stop, Stopping, Fail, StopStorage, Done, StopNetwork, Done, Failed}), true},
		{"stop_storage hook fails: teardown goes on", cat(start, []any{Stop, Stopping, Done, StopStorage, Fail, StopNetwork, Done, Failed}), true},
		{"stop_network hook fails", cat(start, []any{Stop, Stopping}, teardown, []any{Fail, Failed}), true},
		{"dependency fails before start", []any{Fail, Failed}, true},
		{"failreset", []any{Start, StartNetwork, Fail, Failed, FailReset, Stopped, Start, StartNetwork}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{Name: "vm0", MaxRestart: 3, MaxRestartTime: 30 * time.Second})
			// The launch failure is recorded before Abort, as the supervisor does.
			if strings.HasPrefix(tt.name, "launch fails") {
				walk(t, m, tt.steps[:4]...)
				m.MarkFailed("launch failed")
				walk(t, m, tt.steps[4:]...)
			} else {
				walk(t, m, tt.steps...)
			}
			if got := m.Failure() != ""; got != tt.failing {
				t.Fatalf("failure = %q, want failing=%v", m.Failure(), tt.failing)
			}
		})
	}
}

func TestFailReasonKeepsFirst(t *testing.T) {
	m := New(Options{Name: "vm0"})
	walk(t, m, Start, StartNetwork, Done, StartStorage)
	tr, _ := m.Fire(Fail, "hook start_storage exited with status 3")
	if tr.Reason != "hook start_storage exited with status 3" {
		t.Fatalf("reason %q", tr.Reason)
	}
	tr, _ = m.Fire(Fail, "hook stop_network exited with status 1")
	if tr.To != Failed || m.Failure() != "hook start_storage exited with status 3" {
		t.Fatalf("transition %+v, failure %q", tr, m.Failure())
	}
}

// clock is an injectable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func running(c *clock, max int, window time.Duration) *Machine {
	return New(Options{Name: "vm0", Initial: Running, MaxRestart: max, MaxRestartTime: window, Now: c.now})
}

// crash simulates an automatic restart cycle and returns where it ended.
func crash(t *testing.T, m *Machine) Transition {
	t.Helper()
	tr, err := m.Fire(AutoRestart, "crash")
	if err != nil {
		t.Fatal(err)
	}
	if tr.To == Restarting {
		walk(t, m, Done, Restarted, Done, Running)
	}
	return tr
}

func TestRestartBudget(t *testing.T) {
	t.Run("exactly maxrestart inside the window is fine", func(t *testing.T) {
		c := newClock()
		m := running(c, 3, 30*time.Second)
		for i := 0; i < 3; i++ {
			if tr := crash(t, m); tr.To != Restarting {
				t.Fatalf("restart %d went to %s", i+1, tr.To)
			}
			c.advance(9 * time.Second)
		}
	})
	t.Run("one more fails", func(t *testing.T) {
		c := newClock()
		m := running(c, 3, 30*time.Second)
		for i := 0; i < 3; i++ {
			crash(t, m)
			c.advance(time.Second)
		}
		tr := crash(t, m)
		if tr.To != Stopping || tr.Event != AutoRestart {
			t.Fatalf("4th restart: %+v", tr)
		}
		want := "crash; 4 restarts within 30s, maxrestart is 3"
		if tr.Reason != want || m.Failure() != want {
			t.Fatalf("reason %q / failure %q, want %q", tr.Reason, m.Failure(), want)
		}
		walk(t, m, Done, StopStorage, Done, StopNetwork, Done, Failed)
	})
	t.Run("restarts spaced just outside the window", func(t *testing.T) {
		c := newClock()
		m := running(c, 3, 30*time.Second)
		// Four restarts where the first falls out of (t-30s, t] exactly at
		// the fourth.
		for i := 0; i < 10; i++ {
			if tr := crash(t, m); tr.To != Restarting {
				t.Fatalf("restart %d went to %s", i+1, tr.To)
			}
			c.advance(10 * time.Second)
		}
	})
	t.Run("window edge is exclusive", func(t *testing.T) {
		c := newClock()
		m := running(c, 1, 30*time.Second)
		crash(t, m)
		c.advance(30*time.Second - time.Nanosecond)
		if tr := crash(t, m); tr.To != Stopping {
			t.Fatalf("second restart inside the window went to %s", tr.To)
		}
		c2 := newClock()
		m2 := running(c2, 1, 30*time.Second)
		crash(t, m2)
		c2.advance(30 * time.Second)
		if tr := crash(t, m2); tr.To != Restarting {
			t.Fatalf("second restart exactly one window later went to %s", tr.To)
		}
	})
	t.Run("maxrestart 0 allows no automatic restart", func(t *testing.T) {
		m := running(newClock(), 0, 30*time.Second)
		if tr := crash(t, m); tr.To != Stopping {
			t.Fatalf("went to %s", tr.To)
		}
	})
	t.Run("user restarts do not count", func(t *testing.T) {
		c := newClock()
		m := running(c, 1, 30*time.Second)
		for i := 0; i < 5; i++ {
			walk(t, m, Restart, Restarting, Done, Restarted, Done, Running)
		}
		if tr := crash(t, m); tr.To != Restarting {
			t.Fatalf("first automatic restart went to %s", tr.To)
		}
	})
	t.Run("failreset clears the history", func(t *testing.T) {
		c := newClock()
		m := running(c, 1, 30*time.Second)
		crash(t, m)
		crash(t, m)
		walk(t, m, Done, StopStorage, Done, StopNetwork, Done, Failed)
		if n := m.Budget().Count(c.now()); n != 2 {
			t.Fatalf("history before failreset: %d", n)
		}
		walk(t, m, FailReset, Stopped)
		if n := m.Budget().Count(c.now()); n != 0 || m.Failure() != "" {
			t.Fatalf("after failreset: %d restarts, failure %q", n, m.Failure())
		}
		walk(t, m, Start, StartNetwork, Done, StartStorage, Done, Running)
		if tr := crash(t, m); tr.To != Restarting {
			t.Fatalf("restart after failreset went to %s", tr.To)
		}
	})
}

func TestSinceFollowsTransitions(t *testing.T) {
	c := newClock()
	m := New(Options{Name: "vm0", Now: c.now})
	c.advance(time.Minute)
	tr, _ := m.Fire(Start, "")
	if !m.Since().Equal(c.now()) || !tr.Time.Equal(c.now()) {
		t.Fatalf("since %v, transition time %v, want %v", m.Since(), tr.Time, c.now())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second: "30s", 5 * time.Minute: "5m", 2 * time.Hour: "2h",
		90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// Many VMs moving at once each keep their own state.
func TestMachinesMoveIndependently(t *testing.T) {
	cycle := []struct {
		e  Event
		to State
	}{
		{Start, StartNetwork}, {Done, StartStorage}, {Done, Running}, {Stop, Stopping},
		{Done, StopStorage}, {Done, StopNetwork}, {Done, Stopped},
	}
	const n = 50
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			m := New(Options{Name: fmt.Sprintf("vm%d", i)})
			for round := 0; round < 20; round++ {
				for _, c := range cycle[:i%len(cycle)+1] {
					tr, err := m.Fire(c.e, "")
					if err != nil {
						errs <- err
						return
					}
					if tr.To != c.to || m.State() != c.to {
						errs <- fmt.Errorf("vm%d: %s led to %s (machine says %s), want %s", i, c.e, tr.To, m.State(), c.to)
						return
					}
				}
				// Back to stopped the rest of the way round.
				for _, c := range cycle[i%len(cycle)+1:] {
					if _, err := m.Fire(c.e, ""); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// The diagram is drawn by looplab/fsm from Table; the machines move by
// Next. Both must read Table alike, for every state and event.
func TestFSMAgreesWithNext(t *testing.T) {
	for _, st := range States {
		for _, e := range Events {
			f := newFSM(st)
			err := f.Event(context.Background(), string(e))
			to, ok := Next(st, e)
			switch {
			case ok && err != nil:
				t.Errorf("%s in %s: Next goes to %s, looplab/fsm refuses: %v", e, st, to, err)
			case !ok && err == nil:
				t.Errorf("%s in %s: Next refuses, looplab/fsm goes to %s", e, st, f.Current())
			case ok && State(f.Current()) != to:
				t.Errorf("%s in %s: Next goes to %s, looplab/fsm to %s", e, st, to, f.Current())
			}
		}
	}
}

// A suspend tears down as a stop does and ends in suspended; a start
// from there runs the start steps; a restore that fails ends in failed,
// from where failreset leads back to suspended and discard to stopped.
func TestSuspendPaths(t *testing.T) {
	m := New(Options{Name: "vm0", Initial: Running})
	walk(t, m, Suspend, Suspending, Done, StopStorage)
	m.MarkSaved(true)
	walk(t, m, Done, StopNetwork, Done, Suspended, Start, StartNetwork, Done, StartStorage)
	m.MarkFailed("launch failed: load of migration failed")
	walk(t, m, Abort, StopStorage, Done, StopNetwork, Done, Failed, FailReset, Suspended)
	if !m.Saved() || m.Failure() != "" {
		t.Fatalf("after failreset: saved %v, failure %q", m.Saved(), m.Failure())
	}
	walk(t, m, Discard, Stopped)
	if m.Saved() {
		t.Fatal("discard left the state saved")
	}

	// A save that fails leaves the guest running.
	m = New(Options{Name: "vm0", Initial: Paused})
	walk(t, m, Suspend, Suspending, Abort, Running)
}
