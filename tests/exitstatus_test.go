//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/statemachine"
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
		code   string
		reason string
	}{
		{"offafter", "0", "poweroff"},
		{"crashafter", "3", "crash"},
	} {
		t.Run(tc.short, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fifo := filepath.Join(e.work, tc.short+".fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			// The guest waits for its exit code on the fifo.
			vm := e.addVM(tc.short, execVM([]string{"/bin/sh", "-c", `read code < "$0"; exit "$code"`, fifo}, "")+
				"    maxrestart = 3;\n    maxrestarttime = 1h;\n")
			d := e.start()
			d.do(vm, api.ActionStart)
			st := d.waitUp(vm)
			d.term()
			d2 := e.start()
			if got := waitAdopted(d2, vm); got.PID != st.PID {
				t.Fatalf("after the restart the VM runs as pid %d, want the re-adopted %d", got.PID, st.PID)
			}
			if err := os.WriteFile(fifo, []byte(tc.code+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			waitGone(t, st.PID)
			var got api.Status
			if tc.reason == "poweroff" {
				got = d2.waitState(vm, statemachine.Stopped)
				if got.Restarts != 0 {
					t.Errorf("restarts = %d after a poweroff, want 0", got.Restarts)
				}
			} else {
				got = d2.waitStatus(vm, "running again with a new process", func(s api.Status) bool {
					return s.State == statemachine.Running && s.PID != 0 && s.PID != st.PID
				})
				if got.Restarts != 1 {
					t.Errorf("restarts = %d after a crash, want 1", got.Restarts)
				}
			}
			if x := got.LastExit; x == nil || x.Reason != tc.reason || strconv.Itoa(x.Code) != tc.code {
				t.Errorf("last exit = %+v, want %s with code %s", x, tc.reason, tc.code)
			}
			if tc.reason == "crash" {
				d2.do(vm, api.ActionStop)
				d2.waitState(vm, statemachine.Stopped)
			}
		})
	}
}
