package supervisor

import (
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/vmnet"
)

// Status is a snapshot of one VM, as status shows it.
type Status struct {
	Name    string             `json:"name"`
	State   statemachine.State `json:"state"`
	Desired statemachine.State `json:"desired"`
	Since   time.Time          `json:"since"`
	// PID is the hypervisor's process id while one runs.
	PID        int    `json:"pid,omitempty"`
	Hypervisor string `json:"hypervisor"`
	CPUs       int    `json:"cpus"`
	// MemoryMB is the guest memory in MiB.
	MemoryMB    int64  `json:"memory"`
	Owner       string `json:"owner,omitempty"`
	Group       string `json:"group,omitempty"`
	Description string `json:"description,omitempty"`
	Dir         string `json:"dir,omitempty"`
	Autostart   bool   `json:"autostart"`
	// Depends lists the VMs that must run before this one.
	Depends []string `json:"depends,omitempty"`
	// Restarts counts the automatic restarts inside the current budget
	// window; MaxRestart is the budget.
	Restarts   int `json:"restarts"`
	MaxRestart int `json:"maxrestart"`
	// Reason says why the VM is in its state: the failure reason in
	// failed, otherwise the reason given with the last transition.
	Reason string `json:"reason,omitempty"`
	// ConfigError holds the problems of a config file that did not load;
	// the previous config stays in force.
	ConfigError string `json:"config_error,omitempty"`
	// Pending is true when a changed config waits for the VM's next start.
	Pending bool `json:"pending"`
	// Removed is true when the VM's directory is gone while it runs; it
	// is dropped once stopped.
	Removed bool `json:"removed,omitempty"`
	// LastExit is how the hypervisor last ended.
	LastExit *hypervisor.Exit `json:"last_exit,omitempty"`
	// Hook names the state whose hook the VM waits for; a running VM
	// with no hook pending is up.
	Hook statemachine.State `json:"hook,omitempty"`
	// WaitingFor lists the VMs a start waits for (the VM is stopped and
	// starts once they are up).
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Recovering is set after a daemon restart until the VM's hypervisor
	// has been taken over (or found gone): its state is the recorded one,
	// not yet confirmed.
	Recovering bool `json:"recovering,omitempty"`
	// RecordError says why the VM's state record could not be written;
	// the daemon retries until it is.
	RecordError string `json:"record_error,omitempty"`
	// IPAddresses are the guest's addresses as its agent last reported
	// them (guest_agent = true), loopback and link-local left out.
	IPAddresses []string `json:"ip_addresses,omitempty"`
	// VNCAddress is where VNC clients reach the VM (vnc = auto) while
	// its relay listens.
	VNCAddress string `json:"vnc_address,omitempty"`
	// Networks are what the daemon set up for the VM's NICs of type
	// bridge and local (taps, addresses).
	Networks []vmnet.Link `json:"networks,omitempty"`
	// OnHostShutdown is what a host shutdown does to the VM: "stop" or
	// "suspend".
	OnHostShutdown string `json:"on_host_shutdown,omitempty"`
	// Saved describes the saved guest of a suspended VM (or of a failed
	// one whose restore did not work).
	Saved *SavedState `json:"saved,omitempty"`

	restartTimes []time.Time
	window       time.Duration
	instance     hypervisor.Instance
}

// Up reports whether the VM runs and its running hook has finished: what
// a VM that depends on it waits for.
func (s Status) Up() bool {
	return s.State == statemachine.Running && s.Hook == "" && !s.Recovering
}

// Settled reports whether the VM rests in stopped, failed or suspended
// with its hook
// finished: what a stop waits for.
func (s Status) Settled() bool {
	return (s.State == statemachine.Stopped || s.State == statemachine.Failed || s.State == statemachine.Suspended) && s.Hook == "" && len(s.WaitingFor) == 0 && !s.Recovering
}

// withRestarts fills Restarts as of now from the recorded restart times.
func (s Status) withRestarts(now time.Time) Status {
	n := 0
	for _, t := range s.restartTimes {
		if now.Sub(t) < s.window {
			n++
		}
	}
	s.Restarts = n
	return s
}
