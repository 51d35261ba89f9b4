package api

// State is a VM's lifecycle state as the API shows it. The names are the
// daemon's state names (the hook file names); they are repeated here so
// that a client needs nothing but this package, and a test keeps the two
// lists equal.
type State string

// The states, in lifecycle order.
const (
	StateStopped      State = "stopped"
	StateStartNetwork State = "start_network"
	StateStartStorage State = "start_storage"
	StateRunning      State = "running"
	StatePaused       State = "paused"
	StateRestarting   State = "restarting"
	StateRestarted    State = "restarted"
	StateStopping     State = "stopping"
	StateStopStorage  State = "stop_storage"
	StateStopNetwork  State = "stop_network"
	StateFailed       State = "failed"
	StateSuspending   State = "suspending"
	StateSuspended    State = "suspended"
)

// States lists every state in lifecycle order.
var States = []State{
	StateStopped, StateStartNetwork, StateStartStorage, StateRunning, StatePaused, StateRestarting,
	StateRestarted, StateStopping, StateStopStorage, StateStopNetwork, StateFailed,
	StateSuspending, StateSuspended,
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

// Steady reports whether a VM rests in s until something happens from
// outside (a command or a hypervisor exit), as opposed to a state whose
// work is in progress.
func (s State) Steady() bool {
	switch s {
	case StateStopped, StateRunning, StatePaused, StateFailed, StateSuspended:
		return true
	}
	return false
}

// HypervisorUp reports whether a hypervisor process is expected to exist
// in s.
func (s State) HypervisorUp() bool {
	switch s {
	case StateRunning, StatePaused, StateRestarted, StateStopping, StateSuspending:
		return true
	}
	return false
}
