package vmproc

import (
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

func TestClassifySignalled(t *testing.T) {
	sig := func(s syscall.Signal) process.Status { return process.Status{Code: -1, Signal: s, Known: true} }
	unknown := process.Status{Code: -1}
	tests := []struct {
		name   string
		s      process.Status
		req    Requests
		stop   syscall.Signal
		want   hypervisor.ExitReason
		signal string
		ok     bool
	}{
		{"exit code left to the driver", process.Status{Code: 3, Known: true}, Requests{}, syscall.SIGTERM, "", "", false},
		{"our kill", sig(syscall.SIGKILL), Requests{Kill: true}, syscall.SIGTERM, hypervisor.ExitKilled, "SIGKILL", true},
		{"someone's kill", sig(syscall.SIGKILL), Requests{}, syscall.SIGTERM, hypervisor.ExitKilled, "SIGKILL", true},
		{"our stop signal", sig(syscall.SIGTERM), Requests{Shutdown: true}, syscall.SIGTERM, hypervisor.ExitPoweroff, "SIGTERM", true},
		{"custom stop signal", sig(syscall.SIGUSR1), Requests{Shutdown: true}, syscall.SIGUSR1, hypervisor.ExitPoweroff, "SIGUSR1", true},
		{"custom stop signal unasked", sig(syscall.SIGUSR1), Requests{}, syscall.SIGUSR1, hypervisor.ExitCrash, "SIGUSR1", true},
		{"term from someone", sig(syscall.SIGTERM), Requests{}, syscall.SIGTERM, hypervisor.ExitKilled, "SIGTERM", true},
		{"int from someone", sig(syscall.SIGINT), Requests{}, syscall.SIGTERM, hypervisor.ExitKilled, "SIGINT", true},
		{"hup from someone", sig(syscall.SIGHUP), Requests{}, syscall.SIGTERM, hypervisor.ExitKilled, "SIGHUP", true},
		{"segv", sig(syscall.SIGSEGV), Requests{Shutdown: true}, syscall.SIGTERM, hypervisor.ExitCrash, "SIGSEGV", true},
		{"abrt", sig(syscall.SIGABRT), Requests{}, syscall.SIGTERM, hypervisor.ExitCrash, "SIGABRT", true},
		{"unknown", unknown, Requests{}, syscall.SIGTERM, hypervisor.ExitCrash, "", true},
		{"unknown after shutdown", unknown, Requests{Shutdown: true}, syscall.SIGTERM, hypervisor.ExitPoweroff, "", true},
		{"unknown after kill", unknown, Requests{Kill: true}, syscall.SIGTERM, hypervisor.ExitKilled, "", true},
		{"unknown after both", unknown, Requests{Shutdown: true, Kill: true}, syscall.SIGTERM, hypervisor.ExitKilled, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := ClassifySignalled(tt.s, tt.req, tt.stop)
			if ok != tt.ok || e.Reason != tt.want || e.Signal != tt.signal {
				t.Errorf("got %+v ok=%v, want %q signal %q ok=%v", e, ok, tt.want, tt.signal, tt.ok)
			}
			if ok && (e.Code != -1 || e.Detail == "") {
				t.Errorf("got %+v: want code -1 and a detail", e)
			}
			if ok && e.StatusUnknown != !tt.s.Known {
				t.Errorf("got %+v: StatusUnknown must say whether the status was known (%v)", e, tt.s.Known)
			}
		})
	}
}
