package supervisor

import (
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
)

// The log line of an exit gives its status once: not again after a
// detail that says it.
func TestStatusSuffix(t *testing.T) {
	for _, tt := range []struct {
		ex   hypervisor.Exit
		want string
	}{
		{hypervisor.Exit{Reason: hypervisor.ExitReboot, Detail: "exit status 100", Code: 100}, ""},
		{hypervisor.Exit{Reason: hypervisor.ExitPoweroff, Detail: "guest-shutdown", Code: 0}, " (status 0)"},
		{hypervisor.Exit{Reason: hypervisor.ExitCrash, Detail: "killed by SIGSEGV", Code: -1, Signal: "SIGSEGV"}, ""},
		{hypervisor.Exit{Reason: hypervisor.ExitKilled, Code: -1, Signal: "SIGKILL"}, " (status -1, signal SIGKILL)"},
	} {
		if got := statusSuffix(tt.ex); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.ex, got, tt.want)
		}
	}
}
