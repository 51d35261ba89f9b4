package statemachine

// Edge is one row of the transition table: Event moves a VM from any of Src
// to Dst.
type Edge struct {
	Event Event
	Src   []State
	Dst   State
}

// Table is the whole lifecycle. It is the single source of the machine, its
// diagram and its documentation.
//
// A guest reboot goes through Restarting and Restarted only: the network
// and storage steps are not run again. A failure during start-up tears down
// the steps that completed (a failed start_storage hook runs stop_network; a
// failed launch after a good start_storage runs stop_storage and
// stop_network) and ends in Failed.
//
// A suspend saves the guest in Suspending, then runs the same teardown as
// a stop; the teardown ends in Suspended (Saved) instead of Stopped. A
// start of a suspended VM runs the start steps and restores the guest
// instead of booting it. A save that fails leaves the guest running
// (Abort); a hypervisor that dies meanwhile is a failure.
var Table = []Edge{
	{Start, []State{Stopped, Suspended}, StartNetwork},

	{Done, []State{StartNetwork}, StartStorage},
	{Done, []State{StartStorage}, Running},
	{Done, []State{Restarting}, Restarted},
	{Done, []State{Restarted}, Running},
	{Done, []State{Stopping}, StopStorage},
	{Done, []State{StopStorage}, StopNetwork},
	{Done, []State{StopNetwork}, Stopped},
	{Done, []State{Suspending}, StopStorage},

	{Fail, []State{Stopped, StartNetwork}, Failed},
	{Fail, []State{StartStorage}, StopNetwork},
	{Fail, []State{Running, Paused, Restarted}, Stopping},
	{Fail, []State{Restarting, Suspending}, StopStorage},
	{Fail, []State{Stopping}, StopStorage},
	{Fail, []State{StopStorage}, StopNetwork},
	{Fail, []State{StopNetwork}, Failed},

	{Abort, []State{StartNetwork}, StopNetwork},
	{Abort, []State{StartStorage, Restarting}, StopStorage},
	{Abort, []State{Suspending}, Running},

	{Stop, []State{Running, Paused, Restarted}, Stopping},
	{Exited, []State{Running, Paused, Restarted}, Stopping},
	{AutoRestart, []State{Running, Paused, Restarted}, Restarting},
	{Restart, []State{Running, Paused, Restarted}, Restarting},

	{Pause, []State{Running}, Paused},
	{Unpause, []State{Paused}, Running},

	{FailReset, []State{Failed}, Stopped},

	{Suspend, []State{Running, Paused}, Suspending},
	{Saved, []State{StopNetwork, Failed, Stopped}, Suspended},
	{Discard, []State{Suspended, Failed}, Stopped},
}

// Next returns the state event leads to from s, per Table, and whether the
// event is allowed there at all. It ignores the failure and budget rules
// that Machine adds (see Machine.Fire).
func Next(s State, e Event) (State, bool) {
	for _, edge := range Table {
		if edge.Event != e {
			continue
		}
		for _, src := range edge.Src {
			if src == s {
				return edge.Dst, true
			}
		}
	}
	return "", false
}
