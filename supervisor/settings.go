package supervisor

import (
	"time"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/vmnet"
)

// Policy says what follows a hypervisor exit of one kind.
type Policy string

// Exit policies (config keys on_poweroff, on_reboot, on_crash).
const (
	PolicyStop    Policy = "stop"
	PolicyRestart Policy = "restart"
	PolicyFail    Policy = "fail"
)

// settings is what a VM's actor needs from its config, in the supervisor's
// own terms: everything the actor reads is here, so only convert.go knows
// the config package's field names.
type settings struct {
	name        string
	dir         string // the VM's config directory
	file        string // its config file
	scriptPath  string
	description string
	owner       string
	group       string
	autostart   bool
	depends     []string

	driver string
	spec   hypervisor.Spec // without RunDir and Output, which the supervisor fills
	// vncPasswordAuto: the VNC password is the VM's own random one
	// (vnc_password = auto), not one in spec.
	vncPasswordAuto bool
	// net is what the daemon sets up around start_network and
	// stop_network (no NICs: nothing).
	net vmnet.Spec

	hookTimeout  time.Duration
	hookTimeouts map[string]time.Duration
	stopTimeout  time.Duration

	maxRestart     int
	maxRestartTime time.Duration
	onPoweroff     Policy
	onReboot       Policy
	onCrash        Policy
	// onHostShutdown is "stop" or "suspend": what a host shutdown asks
	// of the VM (the client carries it out, see Status).
	onHostShutdown string

	logMaxSizeMB int
	logMaxFiles  int

	// scalars are the config's top-level scalar values, for the hooks'
	// VMSTATED_CFG_<KEY> variables.
	scalars map[string]string
	// digest identifies the config's content; equal digests are no change.
	digest string
}

// hookTimeoutFor returns the time limit of the hook for state. The config
// has applied its defaults (every timeout is at least a second once
// loaded); a VM with no settings at all takes the config's default.
func (s *settings) hookTimeoutFor(state statemachine.State) time.Duration {
	if s == nil {
		return config.DefaultHookTimeout
	}
	if d, ok := s.hookTimeouts[string(state)]; ok {
		return d
	}
	return s.hookTimeout
}

// stopWait returns how long a graceful stop waits before it forces.
func (s *settings) stopWait() time.Duration {
	if s == nil {
		return config.DefaultStopTimeout
	}
	return s.stopTimeout
}

// policyFor returns what follows an exit. The config has applied the
// defaults of on_poweroff, on_reboot and on_crash.
func (s *settings) policyFor(r hypervisor.ExitReason) Policy {
	switch r {
	case hypervisor.ExitPoweroff:
		return s.onPoweroff
	case hypervisor.ExitReboot:
		return s.onReboot
	case hypervisor.ExitKilled:
		// Someone on the host ended the process on purpose (a signal,
		// QMP quit): honour that, as systemd does not restart a unit
		// whose main process got SIGTERM.
		return PolicyStop
	default:
		return s.onCrash
	}
}
