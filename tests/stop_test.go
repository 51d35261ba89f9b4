//go:build linux

package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A VM process that ignores the stop signal is killed after stop_timeout;
// stop -f kills at once; a user's restart does not count toward the budget.
func TestStopPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stubborn := e.addVM("stubborn", e.stubborn("stubborn", "    stop_timeout = 1;\n"))
	forced := e.addVM("forced", execVM([]string{"/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 1000"}, "")+"    stop_timeout = 1h;\n")
	again := e.addVM("again", sleeper("    maxrestart = 0;\n"))
	d := e.start()
	for _, vm := range []string{stubborn, forced, again} {
		d.do(vm, api.ActionStart)
	}

	t.Run("graceful stop times out", func(t *testing.T) {
		t.Parallel()
		st := d.waitState(stubborn, api.StateRunning)
		e.waitStubborn("stubborn")
		d.do(stubborn, api.ActionStop)
		st2 := d.waitState(stubborn, api.StateStopped)
		waitGone(t, st.PID)
		if !strings.Contains(e.readLog(stubborn), "forcing") {
			t.Errorf("log does not say the stop was forced:\n%s", e.readLog(stubborn))
		}
		if st2.LastExit == nil || st2.LastExit.Reason != "killed" {
			t.Errorf("last exit %+v, want killed", st2.LastExit)
		}
	})
	t.Run("forced stop", func(t *testing.T) {
		t.Parallel()
		st := d.waitState(forced, api.StateRunning)
		// stop_timeout is an hour: only -f ends this one in a test's time.
		if out, errOut, code := e.ctl("stop", "-f", "-w", forced); code != 0 {
			t.Fatalf("vmstatedctl stop -f -w exited %d: %s%s", code, out, errOut)
		}
		if st := d.get(forced); st.State != api.StateStopped {
			t.Errorf("after stop -f -w: %s", st.State)
		}
		waitGone(t, st.PID)
	})
	t.Run("user restart", func(t *testing.T) {
		t.Parallel()
		st := d.waitState(again, api.StateRunning)
		ev := d.events(again)
		for i := 1; i <= 2; i++ {
			d.do(again, api.ActionRestart)
			ev.waitEnter(t, api.StateRunning, i)
		}
		st2 := d.waitState(again, api.StateRunning)
		if st2.Restarts != 0 || st2.PID == st.PID || !alive(st2.PID) {
			t.Errorf("after two user restarts with maxrestart 0: %+v (first pid %d)", st2, st.PID)
		}
		waitGone(t, st.PID)
		// Pause stops the process (SIGSTOP); unpause lets it go on; a stop
		// of a paused VM still ends it.
		d.do(again, api.ActionPause)
		d.waitState(again, api.StatePaused)
		// A signal is delivered after kill returns: wait for it.
		waitUntil(t, "the paused VM process to stop", func() bool { return procState(st2.PID) == "T" })
		d.do(again, api.ActionUnpause)
		d.waitState(again, api.StateRunning)
		waitUntil(t, "the unpaused VM process to go on", func() bool { return procState(st2.PID) != "T" })
		d.do(again, api.ActionPause)
		d.waitState(again, api.StatePaused)
		d.do(again, api.ActionStop)
		d.waitState(again, api.StateStopped)
		waitGone(t, st2.PID)
		recs := states(e.waitLastHook(again, "stopped"))
		if want := "paused running paused stopping stop_storage stop_network stopped"; !strings.HasSuffix(strings.Join(recs, " "), want) {
			t.Errorf("hooks %v, want them to end with %s", recs, want)
		}
	})
}

// A hook past its hook_timeout is stopped and fails the step; a hook that
// cannot run (not executable; as root, writable by others) fails with a
// reason that says what to fix.
func TestHookProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := e.addVM("slowhook", sleeper("    hook_timeout = 1;\n"))
	e.control(slow, "start_network", "hang", true)
	noexec := e.addVM("noexec", sleeper(""))
	if err := os.Chmod(filepath.Join(e.root, noexec, "start_storage"), 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := e.addVM("dangling", sleeper(""))
	hook := filepath.Join(e.root, dangling, "start_storage")
	if err := os.Remove(hook); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/hook", hook); err != nil {
		t.Fatal(err)
	}
	isdir := e.addVM("isdir", sleeper(""))
	hook = filepath.Join(e.root, isdir, "start_storage")
	if err := os.Remove(hook); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{slow: "timed out", noexec: "chmod +x", dangling: "does not exist", isdir: "is a directory"}
	if os.Geteuid() == 0 {
		unsafe := e.addVM("unsafe", sleeper(""))
		if err := os.Chmod(filepath.Join(e.root, unsafe, "start_storage"), 0o757); err != nil {
			t.Fatal(err)
		}
		cases[unsafe] = "writable by others"
		foreign := e.addVM("foreign", sleeper(""))
		if err := os.Chown(filepath.Join(e.root, foreign, "start_storage"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[foreign] = "owned by uid 65534"
	}
	d := e.start()
	for vm, want := range cases {
		d.do(vm, api.ActionStart)
		st := d.waitState(vm, api.StateFailed)
		if !strings.Contains(st.Reason, want) {
			t.Errorf("%s failed with %q, want it to say %q", vm, st.Reason, want)
		}
	}
	e.waitHooks(slow, "start_network", "failed")
	if exists(filepath.Join(e.work, slow+".start_network.release")) {
		t.Fatal("nobody should have released the hook")
	}
}

// vmstatedctl reports errors by exit status: 1 for a failed operation, 3
// when no daemon answers.
func TestCtlErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, errOut, code := e.ctl("status"); code != 3 || errOut == "" {
		t.Errorf("vmstatedctl without a daemon: exit %d, %q; want 3 and a message", code, errOut)
	}
	e.addVM("ctl", sleeper(""))
	e.start()
	if _, errOut, code := e.ctl("status", "nosuchvm"); code != 1 || !strings.Contains(errOut, "nosuchvm") {
		t.Errorf("vmstatedctl status of an unknown VM: exit %d, %q; want 1 naming it", code, errOut)
	}
	if _, _, code := e.ctl("frobnicate"); code != 2 {
		t.Errorf("vmstatedctl with an unknown command: exit %d, want 2", code)
	}
}

// procState returns the state letter of a process (R, S, T, Z...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
