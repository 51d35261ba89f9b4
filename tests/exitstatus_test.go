//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// An exec VM re-adopted after a daemon restart is no longer the daemon's
// child; its exit status still decides what follows. A poweroff code
// stops it (on_poweroff), a crash code restarts it (on_crash).
func TestReadoptedExitStatus(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the exit status of a process that is not the daemon's child comes from the proc connector, which older kernels give to root only")
	}
	for _, tc := range []struct {
		short  string
		code   int
		reason string
	}{
		{"offafter", 0, "poweroff"},
		{"crashafter", 3, "crash"},
	} {
		t.Run(tc.short, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fifo := exitFifo(t, e, tc.short)
			// The guest waits for its exit code on the fifo.
			vm := e.addVM(tc.short, execVM([]string{"/bin/sh", "-c", `read code < "$0"; exit "$code"`, fifo}, "")+
				"    maxrestart = 3;\n    maxrestarttime = 1h;\n")
			d2, got := readoptedExit(t, e, vm, fifo, tc.code, tc.reason)
			if x := got.LastExit; x == nil || x.Reason != tc.reason || x.Code != tc.code {
				t.Errorf("last exit = %+v, want %s with code %d", x, tc.reason, tc.code)
			}
			if tc.reason == "crash" {
				d2.do(vm, api.ActionStop)
				d2.waitState(vm, api.StateStopped)
			}
		})
	}
}

// exitFifo makes the fifo a test guest reads its exit code from.
func exitFifo(t *testing.T, e *env, short string) string {
	t.Helper()
	fifo := filepath.Join(e.work, short+".fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	return fifo
}

// readoptedExit starts vm, restarts the daemon so that it re-adopts the
// VM, has the guest exit with code through its fifo and waits for what
// follows: stopped after a poweroff, running again after one restart
// after a crash. It returns the new daemon and the VM's status then.
func readoptedExit(t *testing.T, e *env, vm, fifo string, code int, reason string) (*daemonProc, api.Status) {
	t.Helper()
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	d.term()
	d2 := e.start()
	if got := waitAdopted(d2, vm); got.PID != st.PID {
		t.Fatalf("after the restart the VM runs as pid %d, want the re-adopted %d", got.PID, st.PID)
	}
	if err := os.WriteFile(fifo, []byte(strconv.Itoa(code)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st.PID)
	if reason == "poweroff" {
		got := d2.waitState(vm, api.StateStopped)
		if got.Restarts != 0 {
			t.Errorf("restarts = %d after a poweroff, want 0", got.Restarts)
		}
		return d2, got
	}
	got := d2.waitStatus(vm, "running again with a new process", func(s api.Status) bool {
		return s.State == api.StateRunning && s.PID != 0 && s.PID != st.PID
	})
	if got.Restarts != 1 {
		t.Errorf("restarts = %d after a crash, want 1", got.Restarts)
	}
	return d2, got
}
