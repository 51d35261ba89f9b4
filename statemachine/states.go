// Package statemachine holds the lifecycle of one VM: its states, the events
// that move it, the transition table, and the restart budget.
//
// The package knows nothing about hooks or hypervisors. The supervisor owns
// one Machine per VM, performs the work each state stands for (run the hook,
// launch or stop the hypervisor) and reports the outcome back as an event.
// State and event names go on the wire, into persisted records and into hook
// file names, so they are stable strings.
package statemachine

// State is a lifecycle state. A VM's hook for a state is the executable file
// named like the state in the VM's script directory.
type State string

// The states of a VM. The table in the package's Table shows how they link.
const (
	// Stopped: no hypervisor, no network or storage set up. Initial state.
	Stopped State = "stopped"
	// StartNetwork: the start_network hook sets up networking.
	StartNetwork State = "start_network"
	// StartStorage: the start_storage hook prepares disks; then the
	// hypervisor is launched.
	StartStorage State = "start_storage"
	// Running: the hypervisor is up and the guest runs.
	Running State = "running"
	// Paused: the guest's CPUs are stopped; memory is kept.
	Paused State = "paused"
	// Restarting: the hypervisor has exited (guest reboot or crash) or a
	// restart was asked for; it is relaunched without re-running the
	// network and storage steps.
	Restarting State = "restarting"
	// Restarted: the hypervisor was relaunched.
	Restarted State = "restarted"
	// Stopping: the guest is asked to power off, then forced after the
	// stop deadline.
	Stopping State = "stopping"
	// StopStorage: the hypervisor is gone; the stop_storage hook releases
	// disks.
	StopStorage State = "stop_storage"
	// StopNetwork: the stop_network hook releases networking.
	StopNetwork State = "stop_network"
	// Failed: something failed (a hook, the launch, the restart budget).
	// The VM stays here until failreset.
	Failed State = "failed"
	// Suspending: the guest is paused and its memory and device state
	// are saved to a file; then the hypervisor ends and the teardown
	// hooks run (stop_storage, stop_network), ending in Suspended.
	Suspending State = "suspending"
	// Suspended: no hypervisor; the guest's state waits in a file. A
	// start restores it instead of booting; discard drops it.
	Suspended State = "suspended"
)

// States lists every state in lifecycle order.
var States = []State{
	Stopped, StartNetwork, StartStorage, Running, Paused, Restarting,
	Restarted, Stopping, StopStorage, StopNetwork, Failed, Suspending, Suspended,
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// Steady reports whether the VM rests in s until something happens from
// outside (a command or a hypervisor exit), as opposed to a state whose work
// is in progress.
func (s State) Steady() bool {
	switch s {
	case Stopped, Running, Paused, Failed, Suspended:
		return true
	}
	return false
}

// HypervisorUp reports whether a hypervisor process is expected to exist
// in s.
func (s State) HypervisorUp() bool {
	switch s {
	case Running, Paused, Restarted, Stopping, Suspending:
		return true
	}
	return false
}

// Event is something that moves a VM from one state to another.
type Event string

// The events. Commands come from users; the others report the outcome of
// the work a state stands for, or a hypervisor exit.
const (
	// Start is the start command.
	Start Event = "start"
	// Stop is the stop command (graceful, then forced after the deadline).
	Stop Event = "stop"
	// Restart is a restart asked for by a user; it does not count toward
	// the restart budget.
	Restart Event = "restart"
	// Pause freezes the guest.
	Pause Event = "pause"
	// Unpause thaws a paused guest.
	Unpause Event = "unpause"
	// FailReset leaves failure mode and clears the restart history.
	FailReset Event = "failreset"

	// Done reports that the current state's work succeeded.
	Done Event = "done"
	// Fail reports that the current state's work failed (in Stopped: a VM
	// it depends on could not be started). During start-up it
	// leads to the teardown of the steps that completed; during teardown
	// the remaining steps still run. Either way the VM ends in Failed.
	Fail Event = "fail"
	// Abort reports that the current state's work completed but the VM is
	// not to go on (a stop arrived meanwhile, or the launch that follows
	// the storage step failed): tear down from here.
	Abort Event = "abort"
	// Exited reports that the hypervisor exited and the VM is to stop
	// (guest poweroff, or the exit policy says stop).
	Exited Event = "exited"
	// AutoRestart reports that the hypervisor exited and the VM is to be
	// restarted (guest reboot or crash, per policy). It counts toward the
	// restart budget; when the budget is spent the VM stops and fails.
	AutoRestart Event = "auto_restart"

	// Suspend saves the guest's state to a file and takes the VM down
	// to Suspended.
	Suspend Event = "suspend"
	// Discard drops a saved guest state (Suspended, or Failed after a
	// restore that did not work) and leaves the VM stopped.
	Discard Event = "discard"
	// Saved ends a teardown in Suspended instead of Stopped: the guest's
	// state was saved before it (see Machine.MarkSaved). A failreset of a
	// VM that keeps a saved state also leads back to Suspended, and a
	// stopped VM that received a saved guest (receive) goes there too.
	Saved Event = "saved"
)

// Events lists every event.
var Events = []Event{
	Start, Stop, Restart, Pause, Unpause, FailReset,
	Done, Fail, Abort, Exited, AutoRestart, Suspend, Discard, Saved,
}

// Valid reports whether e is one of the known events.
func (e Event) Valid() bool {
	for _, k := range Events {
		if e == k {
			return true
		}
	}
	return false
}

// Command reports whether e is something a user asks for (as opposed to an
// outcome the supervisor reports).
func (e Event) Command() bool {
	switch e {
	case Start, Stop, Restart, Pause, Unpause, FailReset, Suspend, Discard:
		return true
	}
	return false
}
