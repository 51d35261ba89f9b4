//go:build linux

package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/api"
)

func TestCommandLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addVM("ok", sleeper(""))
	// A root whose only problem is a warning checks fine and says so.
	warnRoot := filepath.Join(e.dir, "warnroot")
	if err := os.MkdirAll(filepath.Join(warnRoot, "w"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile(filepath.Join(warnRoot, "w", "config"), "w {\n"+sleeper("    maxrestrat = 2;\n")+"}\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"help", []string{"-h"}, 0, "", "usage: vmstated"},
		{"bad flag", []string{"-x"}, 2, "", "usage: vmstated"},
		{"stray argument", []string{"-f", "extra"}, 2, "", "unexpected argument"},
		{"missing value", []string{"-c"}, 2, "", "usage: vmstated"},
		{"check good root", []string{"-n", "-c", e.root}, 0, "configuration ok", ""},
		{"check warning", []string{"-n", "-c", warnRoot}, 0, "configuration ok", filepath.Join(warnRoot, "w", "config") + ":4:5: maxrestrat: warning:"},
		{"check missing root", []string{"-n", "-c", filepath.Join(e.dir, "nowhere")}, 1, "", "nowhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := e.run(vmstatedBin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("vmstated %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// A second daemon on the same pidfile is refused and names the first.
func TestSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addVM("one", sleeper(""))
	d := e.start()
	want := fmt.Sprintf("already running (pid %d", d.cmd.Process.Pid)
	for _, args := range [][]string{
		append([]string{"-f"}, e.flags()...),
		e.flags(), // background
	} {
		out, errOut, code := e.run(vmstatedBin, args...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("second vmstated %v: exit %d, %q%q; want 1 and %q", args, code, out, errOut, want)
		}
	}
	if _, err := d.c.List(ctx(t)); err != nil {
		t.Errorf("the first daemon no longer answers: %v", err)
	}
}

// In the background, a start-up failure reaches the parent, which exits
// non-zero with the reason.
func TestBackgroundBrokenRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	file := filepath.Join(e.dir, "plainfile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, root, want string
	}{
		{"missing", filepath.Join(e.dir, "nowhere"), "does not exist"},
		{"a file", file, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(e.flags(), "-c", tc.root)
			out, errOut, code := e.run(vmstatedBin, args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("background vmstated on a root that is %s: exit %d, %q%q; want non-zero and %q", tc.name, code, out, errOut, tc.want)
			}
			assertUnlocked(t, e.pidfile)
		})
	}
	// A socket that cannot be bound fails the same way.
	args := append(e.flags(), "-s", filepath.Join(file, "ctl.sock"))
	if _, errOut, code := e.run(vmstatedBin, args...); code == 0 || errOut == "" {
		t.Errorf("background vmstated with an impossible socket path: exit %d, %q", code, errOut)
	}
	assertUnlocked(t, e.pidfile)
}

// assertUnlocked checks no daemon holds the pidfile.
func assertUnlocked(t *testing.T, pidfile string) {
	t.Helper()
	f, err := os.OpenFile(pidfile, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("pidfile %s is still locked: a daemon runs", pidfile)
	}
}

// In the background, the parent exits 0 once the daemon is ready; the
// pidfile holds the daemon's pid (not the parent's) and the daemon answers
// on its socket and tells NOTIFY_SOCKET it is ready.
func TestBackgroundPidfile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("bg", sleeper(""))
	notes := e.listenNotify()
	cmd := e.command(vmstatedBin, e.flags()...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+e.notify)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("background vmstated: %v: %s", err, out)
	}
	b, err := os.ReadFile(e.pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile holds %q", b)
	}
	e.addBackground(pid)
	if pid == cmd.Process.Pid || !alive(pid) {
		t.Fatalf("pidfile holds %d; the parent was %d; alive: %v", pid, cmd.Process.Pid, alive(pid))
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != vmstatedBin {
		t.Errorf("pid %d from the pidfile runs %s, not vmstated", pid, exe)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("background daemon is not a session leader (sid %d)", sid)
	}
	if n := waitNotify(t, notes, "READY=1"); n != "READY=1" {
		t.Errorf("notify datagram %q", n)
	}
	c := api.NewClient(e.socket)
	defer c.Close()
	if _, err := c.Start(ctx(t), vm); err != nil {
		t.Fatal(err)
	}
	var st api.Status
	waitUntil(t, vm+" running", func() bool {
		st, _ = c.Get(ctx(t), vm)
		return st.State == api.StateRunning
	})
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if !alive(st.PID) {
		t.Errorf("VM process %d ended with the background daemon", st.PID)
	}
}

// SIGTERM ends the daemon with status 0 and leaves the VM process running,
// its state on disk; a new daemon re-adopts it.
func TestSIGTERMLeavesVMRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("survivor", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitState(vm, api.StateRunning)
	// Up: the running hook has finished (one the exit cut short would
	// run again under the next daemon).
	st := d.waitUp(vm)
	if code := d.term(); code != 0 {
		t.Errorf("vmstated exited %d on SIGTERM, want 0", code)
	}
	if !alive(st.PID) {
		t.Fatalf("VM process %d ended with the daemon", st.PID)
	}
	b, err := os.ReadFile(filepath.Join(e.stateDir, vm+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		State  string `json:"state"`
		Handle *struct {
			PID int `json:"pid"`
		} `json:"handle"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Handle == nil || rec.Handle.PID != st.PID || rec.State != "running" {
		t.Errorf("state record %s does not hold the running VM's pid %d", b, st.PID)
	}
	// No hook ran because the daemon exited.
	if recs := states(e.records(vm)); strings.Join(recs, " ") != "start_network start_storage running" {
		t.Errorf("hooks: %v", recs)
	}

	d2 := e.start()
	// While it re-adopts the process the VM shows running with no pid yet.
	st2 := d2.waitStatus(vm, "running with a pid", func(s api.Status) bool { return s.State == api.StateRunning && s.PID != 0 })
	if st2.PID != st.PID {
		t.Errorf("after a daemon restart: pid %d, want the re-adopted %d", st2.PID, st.PID)
	}
	d2.do(vm, api.ActionStop)
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	e.waitHooks(vm, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
}

// SIGHUP rescans the config root: a new VM appears; the service manager
// hears RELOADING=1 then READY=1.
func TestSIGHUPRescan(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addVM("first", sleeper(""))
	d := e.start()
	vm := e.addVM("second", sleeper(""))
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if n := d.waitNote("RELOADING=1"); !strings.Contains(n, "MONOTONIC_USEC=") {
		t.Errorf("reloading notice %q lacks MONOTONIC_USEC", n)
	}
	d.waitNote("READY=1")
	// READY=1 follows the reload only once its changes reached the VMs.
	if _, err := d.c.Get(ctx(t), vm); err != nil {
		t.Fatalf("%s not there when the daemon said READY=1 after SIGHUP: %v", vm, err)
	}
	// The API's reload and vmstatedctl reload do the same.
	third := e.addVM("third", sleeper(""))
	if out, errOut, code := e.ctl("reload"); code != 0 {
		t.Fatalf("vmstatedctl reload exited %d: %s%s", code, out, errOut)
	}
	// The reload returns once its changes are in effect.
	if _, err := d.c.Get(ctx(t), third); err != nil {
		t.Fatalf("%s not there right after the reload: %v", third, err)
	}
	// A broken config: reload says so and exits non-zero.
	e.writeConfig(third, "    cpus = many;\n")
	out, errOut, code := e.ctl("reload")
	if code == 0 || !strings.Contains(out, "invalid: "+third) || !strings.Contains(errOut, "did not load") {
		t.Errorf("reload of a broken config: exit %d\n%s%s", code, out, errOut)
	}
	if st := d.get(third); st.ConfigError == "" {
		t.Errorf("%s shows no config error right after the reload", third)
	}
}

// autostart VMs start on the daemon's first start of a boot (a fresh
// runtime directory), not on later starts of the same boot.
func TestAutostart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	auto := e.addVM("auto", sleeper("    autostart = true;\n"))
	manual := e.addVM("manual", sleeper(""))
	d := e.start()
	st := d.waitState(auto, api.StateRunning)
	e.waitHooks(auto, "start_network", "start_storage", "running")
	if m := d.get(manual); m.State != api.StateStopped {
		t.Errorf("%s without autostart is %s", manual, m.State)
	}
	d.do(auto, api.ActionStop)
	d.waitState(auto, api.StateStopped)
	waitGone(t, st.PID)
	e.waitLastHook(auto, "stopped")
	d.term()

	d2 := e.start()
	// Let the new daemon settle: its hooks for auto would run before
	// those of a start we ask for now.
	d2.do(manual, api.ActionStart)
	st = d2.waitState(manual, api.StateRunning)
	if a := d2.get(auto); a.State != api.StateStopped {
		t.Errorf("%s was started again on a second daemon start of the same boot: %s", auto, a.State)
	}
	d2.do(manual, api.ActionStop)
	d2.waitState(manual, api.StateStopped)
	waitGone(t, st.PID)
	e.waitHooks(auto, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
}
