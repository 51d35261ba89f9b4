//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A diskless QEMU guest (no OS: it ignores the ACPI power button) runs
// under the daemon: status shows its pid, a stop reaches the forced path
// after stop_timeout, and QEMU's own output lands in the VM's log.
func TestQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	t.Parallel()
	e := newEnv(t)
	// The CPU flag TCG lacks makes QEMU print a warning: output to find in
	// the log.
	vm := e.addVM("qemu", `    hypervisor = qemu;
    memory = 64;
    stop_timeout = 2;
    qemu { accel = tcg; serial = false; cpu = "qemu64,+avx512f"; }
`)
	d := e.start()
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	if st.Hypervisor != "qemu" || st.Memory != 64 || !alive(st.PID) {
		t.Fatalf("status: %+v", st)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.PID))
	if want, _ := filepath.EvalSymlinks(qemu); exe != want {
		t.Errorf("pid %d runs %s, want QEMU %s", st.PID, exe, want)
	}
	calls := e.waitHooks(vm, "start_network", "start_storage", "running")
	if calls[2].pid != fmt.Sprint(st.PID) {
		t.Errorf("running hook saw VMSTATED_PID=%s, QEMU is %d", calls[2].pid, st.PID)
	}

	// Pause and unpause go through QMP; info asks QEMU about itself.
	d.do(vm, api.ActionPause)
	d.waitState(vm, api.StatePaused)
	d.do(vm, api.ActionUnpause)
	d.waitState(vm, api.StateRunning)
	if info, err := d.c.Info(ctx(t), vm); err != nil || len(info) == 0 {
		t.Errorf("info: %v, %v", info, err)
	}

	// QEMU killed behind the daemon's back is a crash: relaunched.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev.waitEnter(t, api.StateRunning, 3)
	first := st.PID
	st = d.waitState(vm, api.StateRunning)
	if st.PID == first || !alive(st.PID) || st.Restarts != 1 || st.LastExit == nil || st.LastExit.Reason != "crash" {
		t.Errorf("after QEMU was killed: %+v (first pid %d)", st, first)
	}

	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	ev.waitEnter(t, api.StateStopped, 1)
	waitGone(t, st.PID)
	e.waitHooks(vm, "start_network", "start_storage", "running", "paused", "running", "restarting", "restarted", "running", "stopping", "stop_storage", "stop_network", "stopped")
	if got := strings.Join(ev.path(), " "); got != "start_network start_storage running paused running restarting restarted running stopping stop_storage stop_network stopped" {
		t.Errorf("transitions: %s", got)
	}
	log := e.readLog(vm)
	for _, want := range []string{"forcing", "TCG doesn't support requested feature"} {
		if !strings.Contains(log, want) {
			t.Errorf("log of %s lacks %q:\n%s", vm, want, log)
		}
	}
}

// Paths given relative to the directory the daemon starts in work for
// QEMU too, which runs elsewhere and is told where to put its pidfile and
// sockets.
func TestQEMURelativePaths(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	t.Parallel()
	e := newEnv(t)
	e.relative = true
	vm := e.addVM("qemurel", "    hypervisor = qemu;\n    memory = 64;\n    qemu { accel = tcg; serial = false; }\n")
	d := e.start()
	d.do(vm, api.ActionStart)
	if st := d.waitState(vm, api.StateRunning); !alive(st.PID) {
		t.Fatalf("status: %+v", st)
	}
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d.waitState(vm, api.StateStopped)
}
