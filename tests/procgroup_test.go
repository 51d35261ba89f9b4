//go:build linux

package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/statemachine"
)

// An exec VM is every process its program starts: pause stops all of
// them, unpause lets all of them go on, and stop leaves none behind, also
// after a daemon restart re-adopted the VM. A child that left the process
// group (setsid) is caught too where the VM runs in a cgroup.
func TestExecVMIsItsProcessGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	child := filepath.Join(e.work, "child.pid")
	escaped := filepath.Join(e.work, "escaped.pid")
	script := fmt.Sprintf("sleep 1000 & echo $! > %s; setsid sleep 1000 & echo $! > %s; wait", child, escaped)
	vm := e.addVM("pgroup", execVM([]string{"/bin/sh", "-c", script}, ""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	leader := st.PID
	kid := readPID(t, child)
	away := readPID(t, escaped)
	cgroup := handleCgroup(t, e, vm)
	if cgroup != "" {
		// Should the test fail before the stop: end what is in it.
		t.Cleanup(func() { process.Group{Cgroup: cgroup}.EndLeftovers() })
	}
	watched := []int{leader, kid}
	if cgroup != "" {
		watched = append(watched, away)
	} else {
		t.Logf("no cgroup for the VM (not root or no writable cgroup v2): the setsid child is not checked")
	}
	pauseResume := func(d *daemonProc) {
		t.Helper()
		d.do(vm, api.ActionPause)
		d.waitState(vm, statemachine.Paused)
		for _, pid := range watched {
			waitUntil(t, fmt.Sprintf("process %d stopped", pid), func() bool { return procState(pid) == "T" })
		}
		d.do(vm, api.ActionUnpause)
		d.waitState(vm, statemachine.Running)
		for _, pid := range watched {
			waitUntil(t, fmt.Sprintf("process %d running again", pid), func() bool { s := procState(pid); return s != "T" && s != "" })
		}
	}
	pauseResume(d)

	d.term()
	d2 := e.start()
	if got := waitAdopted(d2, vm); got.PID != leader {
		t.Fatalf("after the restart the VM runs as pid %d, want the re-adopted %d", got.PID, leader)
	}
	pauseResume(d2)

	if out, errOut, code := e.ctl("stop", "-w", vm); code != 0 {
		t.Fatalf("vmstatedctl stop -w exited %d: %s%s", code, out, errOut)
	}
	if st := d2.get(vm); st.State != statemachine.Stopped {
		t.Errorf("after stop -w: %s", st.State)
	}
	for _, pid := range watched {
		if alive(pid) {
			t.Errorf("process %d of the VM still runs after stop", pid)
		}
	}
	if left := groupMembers(leader); len(left) > 0 {
		t.Errorf("processes %v of the VM's group %d still run after stop", left, leader)
	}
	if cgroup != "" {
		if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
			t.Errorf("the VM's cgroup %s is still there after stop (%v)", cgroup, err)
		}
	}
}

// waitAdopted waits until a restarted daemon has re-adopted a VM's
// process and the VM is up.
func waitAdopted(d *daemonProc, vm string) api.Status {
	d.e.t.Helper()
	return d.waitStatus(vm, "re-adopted and up", func(s api.Status) bool {
		return s.State == statemachine.Running && s.Hook == "" && s.PID != 0
	})
}

// readPID waits for a pid file a VM writes and returns the pid.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitUntil(t, "pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// handleCgroup returns the cgroup the VM's handle names, "" if none.
func handleCgroup(t *testing.T, e *env, vm string) string {
	t.Helper()
	h, err := hypervisor.ReadHandleFile(filepath.Join(e.runDir, vm))
	if err != nil {
		t.Fatalf("handle of %s: %v", vm, err)
	}
	return h.Cgroup
}

// groupMembers returns the live processes in process group pgid.
func groupMembers(pgid int) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is the state (field 3), f[2] the process group (field 5).
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, pid)
		}
	}
	return out
}
