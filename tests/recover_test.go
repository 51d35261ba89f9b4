//go:build linux

package tests

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A VM process that dies while the daemon is down is a crash for the
// daemon that comes back: it is restarted per policy, counted in the
// budget.
func TestCrashWhileDaemonDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("downcrash", sleeper("    maxrestart = 3;\n    maxrestarttime = 1h;\n"))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	e.waitLastHook(vm, "running")
	d.term()
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st.PID)

	d2 := e.start()
	st2 := d2.waitStatus(vm, "running again with a new process", func(s api.Status) bool {
		return s.State == api.StateRunning && s.PID != 0 && s.PID != st.PID
	})
	if st2.Restarts != 1 {
		t.Errorf("restarts %d after a crash while the daemon was down, want 1", st2.Restarts)
	}
	recs := e.waitHookRan(vm, "restarted")
	if got := strings.Join(states(recs), " "); !strings.HasPrefix(got, "start_network start_storage running restarting restarted") {
		t.Errorf("hooks: %s", got)
	}
	d2.do(vm, api.ActionStop)
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st2.PID)
}

// A daemon killed (SIGKILL) during a graceful stop: the next one re-arms
// the stop deadline, forces the stubborn VM and runs the remaining
// teardown hooks once.
func TestDaemonKilledWhileStopping(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("killstop", e.stubborn("killstop", "    stop_timeout = 3;\n"))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	e.waitStubborn("killstop")
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopping)
	e.waitLastHook(vm, "stopping")
	_ = d.cmd.Process.Kill()
	<-d.done
	if !alive(st.PID) {
		t.Fatalf("VM process %d died with the daemon", st.PID)
	}

	d2 := e.start()
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	recs := e.waitLastHook(vm, "stopped")
	got := strings.Join(states(recs), " ")
	if !strings.HasPrefix(got, "start_network start_storage running stopping") ||
		!strings.HasSuffix(got, "stop_storage stop_network stopped") ||
		strings.Count(got, "stop_storage") != 1 || strings.Count(got, "stop_network") != 1 {
		t.Errorf("hooks: %s; want the teardown to finish, each hook once", got)
	}
}

// A daemon stopped (SIGTERM) while a start hook runs waits for the hook
// up to its drain period. A hook that finishes meanwhile leaves its status:
// the next daemon goes on without running it again. One that outlasts the
// drain is stopped, and the next daemon runs that step's hook again (its
// journal says it did not finish). Either way the start goes on: no step
// is skipped, none before it is repeated, nothing is torn down.
func TestDaemonExitDuringStartHook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		short    string
		finishes bool
		storage  []string // the start_storage runs expected
	}{
		{"drained", true, []string{"start_storage"}},
		{"midstart", false, []string{"start_storage", "start_storage"}},
	} {
		t.Run(tc.short, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			vm := e.addVM(tc.short, sleeper(""))
			e.control(vm, "start_storage", "hang", true)
			d := e.start()
			d.do(vm, api.ActionStart)
			waitUntil(t, "start_storage to hang", func() bool { return exists(e.work + "/" + vm + ".start_storage.hanging") })
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			// The daemon says it waits for the hook; only then is the hook
			// let go, or left to outlast the drain.
			waitUntil(t, "the daemon to wait for the hook", func() bool {
				return strings.Contains(d.stderr.String(), "waiting up to 10s for 1 running hook(s) to finish")
			})
			if tc.finishes {
				e.control(vm, "start_storage", "release", true)
			}
			if code := d.term(); code != 0 {
				t.Errorf("vmstated exited %d on SIGTERM, want 0", code)
			}
			e.control(vm, "start_storage", "hang", false)
			e.control(vm, "start_storage", "release", false)

			d2 := e.start()
			st := d2.waitState(vm, api.StateRunning)
			starts := append(append([]string{"start_network"}, tc.storage...), "running")
			e.waitHooks(vm, starts...)
			d2.do(vm, api.ActionStop)
			d2.waitState(vm, api.StateStopped)
			waitGone(t, st.PID)
			e.waitHooks(vm, append(starts, "stopping", "stop_storage", "stop_network", "stopped")...)
		})
	}
}

// A daemon killed outright while a start hook runs: the hook lives on and
// finishes while no daemon runs; the next daemon learns it succeeded and
// goes on without running it again.
func TestDaemonKilledDuringStartHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("hookalone", sleeper(""))
	e.control(vm, "start_storage", "hang", true)
	d := e.start()
	d.do(vm, api.ActionStart)
	waitUntil(t, "start_storage to hang", func() bool { return exists(e.work + "/" + vm + ".start_storage.hanging") })
	_ = d.cmd.Process.Kill()
	<-d.done
	e.control(vm, "start_storage", "hang", false)
	e.control(vm, "start_storage", "release", true)
	// The hook ends on its own; its last act is the sleep loop's exit.
	waitUntil(t, "the orphaned hook to finish", func() bool {
		for _, pid := range e.hookProcs() {
			if alive(pid) {
				return false
			}
		}
		return true
	})

	d2 := e.start()
	st := d2.waitState(vm, api.StateRunning)
	e.waitHooks(vm, "start_network", "start_storage", "running")
	d2.do(vm, api.ActionStop)
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
}

// A daemon that exits while the stopped hook (or the failed hook) runs:
// the next daemon runs it again, as it does for the other hooks, so that
// no state entry goes without its hook.
func TestDaemonExitDuringNoticeHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct{ short, state string }{{"notestop", "stopped"}, {"notefail", "failed"}} {
		vm := e.addVM(tc.short, sleeper(""))
		e.control(vm, tc.state, "hang", true)
		if tc.state == "failed" {
			e.control(vm, "start_network", "fail", true)
		}
	}
	stopVM, failVM := e.name("notestop"), e.name("notefail")
	d := e.start()
	d.do(stopVM, api.ActionStart)
	st := d.waitState(stopVM, api.StateRunning)
	d.do(stopVM, api.ActionStop)
	d.do(failVM, api.ActionStart)
	for _, x := range [][2]string{{stopVM, "stopped"}, {failVM, "failed"}} {
		waitUntil(t, x[1]+" hook to hang", func() bool { return exists(filepath.Join(e.work, x[0]+"."+x[1]+".hanging")) })
	}
	waitGone(t, st.PID)
	d.term()
	for _, x := range [][2]string{{stopVM, "stopped"}, {failVM, "failed"}} {
		e.control(x[0], x[1], "hang", false)
	}
	e.start()
	parent := e.t
	defer func() { e.t = parent }()
	t.Run("stopped", func(t *testing.T) {
		e.t = t
		e.waitHooks(stopVM, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped", "stopped")
	})
	t.Run("failed", func(t *testing.T) {
		e.t = t
		e.waitHooks(failVM, "start_network", "failed", "failed")
	})
}
