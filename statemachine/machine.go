package statemachine

import (
	"errors"
	"fmt"
	"time"

	"github.com/looplab/fsm"
)

// ErrNotAllowed is matched (errors.Is) by every NotAllowedError.
var ErrNotAllowed = errors.New("not allowed in the current state")

// NotAllowedError is returned when an event is not allowed in the VM's
// current state.
type NotAllowedError struct {
	VM    string
	Event Event
	State State
}

func (e *NotAllowedError) Error() string {
	msg := fmt.Sprintf("cannot %s %s: it is %s", e.Event, e.VM, e.State)
	switch {
	case e.State == Failed && e.Event != FailReset:
		msg += fmt.Sprintf("; run 'vmstatedctl failreset %s' first", e.VM)
	case e.State == Suspended:
		msg += fmt.Sprintf("; its guest is saved: 'vmstatedctl start %s' restores it, 'vmstatedctl discard %s' drops it", e.VM, e.VM)
	case !e.State.Steady():
		msg += "; try again when it has settled"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotAllowed) true.
func (e *NotAllowedError) Is(target error) bool { return target == ErrNotAllowed }

// Transition records one move of a VM.
type Transition struct {
	VM     string    `json:"vm"`
	Event  Event     `json:"event"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// Options configures a Machine.
type Options struct {
	// Name is the VM's name, used in errors.
	Name string
	// Initial is the starting state; empty means Stopped. A daemon that
	// re-adopts a VM starts its machine where the persisted record says.
	Initial State
	// MaxRestart and MaxRestartTime are the restart budget.
	MaxRestart     int
	MaxRestartTime time.Duration
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
	// Since is when Initial was entered; zero means now. A re-adopted VM
	// keeps the time it really entered its state.
	Since time.Time
}

// Machine is the lifecycle of one VM. It is not safe for concurrent use:
// exactly one goroutine (the VM's supervisor) owns it.
type Machine struct {
	name    string
	state   State
	now     func() time.Time
	since   time.Time
	failure string
	saved   bool
	budget  RestartBudget
}

// New returns a machine in opts.Initial (or Stopped).
func New(opts Options) *Machine {
	initial := opts.Initial
	if initial == "" {
		initial = Stopped
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	since := opts.Since
	if since.IsZero() {
		since = now()
	}
	return &Machine{
		name:   opts.Name,
		state:  initial,
		now:    now,
		since:  since,
		budget: RestartBudget{Max: opts.MaxRestart, Window: opts.MaxRestartTime},
	}
}

// newFSM builds the looplab/fsm machine from Table. The machines move by
// Next, a lookup in Table with no lock; looplab/fsm draws the diagram, and
// the tests check that it reads Table as Next does.
func newFSM(initial State) *fsm.FSM {
	events := make(fsm.Events, 0, len(Table))
	for _, e := range Table {
		src := make([]string, len(e.Src))
		for i, s := range e.Src {
			src[i] = string(s)
		}
		events = append(events, fsm.EventDesc{Name: string(e.Event), Src: src, Dst: string(e.Dst)})
	}
	return fsm.NewFSM(string(initial), events, nil)
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Since returns when the current state was entered.
func (m *Machine) Since() time.Time { return m.since }

// Failure returns the recorded failure reason: set while a failure's
// teardown runs and in Failed, empty otherwise.
func (m *Machine) Failure() string { return m.failure }

// MarkFailed records that the VM is failing, without moving it: the
// teardown that follows ends in Failed instead of Stopped. The first reason
// recorded is kept, since later failures are usually its consequences.
func (m *Machine) MarkFailed(reason string) {
	if m.failure == "" {
		if reason == "" {
			reason = "failed in " + string(m.State())
		}
		m.failure = reason
	}
}

// MarkSaved records whether the guest's state is saved (a suspend wrote
// it, and no restore has used it up yet). While it is, the teardown ends
// in Suspended, and a failreset leads back there; the supervisor, which
// owns the file, keeps this in step with it.
func (m *Machine) MarkSaved(saved bool) { m.saved = saved }

// Saved reports what MarkSaved recorded.
func (m *Machine) Saved() bool { return m.saved }

// Budget returns the restart budget, to read or restore its history.
func (m *Machine) Budget() *RestartBudget { return &m.budget }

// SetBudget changes the budget's limits (a new config), keeping history.
func (m *Machine) SetBudget(max int, window time.Duration) {
	m.budget.Max, m.budget.Window = max, window
}

// Can reports whether e is allowed in the current state.
func (m *Machine) Can(e Event) bool {
	_, ok := Next(m.State(), e)
	return ok
}

// Fire applies e with an optional reason and returns the transition made.
// On top of Table it applies two rules:
//   - AutoRestart records a restart in the budget; when that exhausts it,
//     the VM is marked failed and stops instead (the event is taken as
//     Exited, and the transition's reason says why).
//   - Done at the end of a teardown (StopNetwork) leads to Failed instead of
//     Stopped when a failure was recorded, and else to Suspended (as Saved)
//     when the guest's state is saved.
//   - FailReset of a VM whose guest state is saved leads to Suspended (as
//     Saved): the saved guest is kept for the next start.
//
// Fail records its reason as the failure. FailReset clears the failure and
// the restart history (a fresh start gets the whole budget).
func (m *Machine) Fire(e Event, reason string) (Transition, error) {
	from := m.State()
	if _, ok := Next(from, e); !ok {
		return Transition{}, &NotAllowedError{VM: m.name, Event: e, State: from}
	}
	now := m.now()
	effective := e
	switch e {
	case Fail:
		m.MarkFailed(reason)
		reason = m.failure
	case AutoRestart:
		if n, ok := m.budget.Record(now); !ok {
			why := m.budget.ExhaustedReason(n)
			if reason != "" {
				why = reason + "; " + why
			}
			m.MarkFailed(why)
			reason = why
			effective = Exited
		}
	case Done:
		if from == StopNetwork && m.failure != "" {
			effective = Fail
			reason = m.failure
		} else if from == StopNetwork && m.saved {
			effective = Saved
		}
	case FailReset:
		m.failure = ""
		m.budget.Reset()
		if m.saved {
			effective = Saved
		}
	case Discard:
		m.failure = ""
		m.saved = false
	case Start:
		m.failure = ""
	case Saved:
		m.saved = true
	}
	to, ok := Next(from, effective)
	if !ok {
		// The event was allowed; what it became (Exited for a spent
		// budget, Fail for a failed teardown) must be too, which the
		// tests check for every state.
		return Transition{}, fmt.Errorf("state machine of %s: %s (for %s) in %s: %w", m.name, effective, e, from, ErrNotAllowed)
	}
	m.state, m.since = to, now
	return Transition{VM: m.name, Event: e, From: from, To: to, Reason: reason, Time: now}, nil
}

// Diagram returns the transition table as a Mermaid state diagram, made by
// looplab/fsm from the same table the machine runs.
func Diagram() (string, error) {
	return fsm.VisualizeWithType(newFSM(Stopped), fsm.MERMAID)
}
