package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/statemachine"
)

// waitLimit guards against deadlocks only; nothing here measures speed.
const waitLimit = 15 * time.Second

// fixture is a config root with VM directories, and a supervisor on it.
type fixture struct {
	t       *testing.T
	base    string
	subDone chan struct{}
	root    string
	record  string // hooks append a line here for every run
	// drain is the supervisor's HookDrain: short by default, so that
	// hooks left hanging by a test do not hold up its end.
	drain time.Duration
	sup   *Supervisor
	// w watches the config root, as the daemon's watcher does; Follow
	// applies what it reports once follow has been called.
	w          *config.Watcher
	watchDone  chan struct{}
	following  bool
	followDone chan struct{}
	cancel     context.CancelFunc
	sub        *Subscription
	mu         sync.Mutex
	seen       []Event
}

// recordHook appends "<vm> <state> prev=<prev> reason=<reason>" to the
// record file, then exits with the status found in the file
// <state>.exit next to it (0 when absent), or sleeps when <state>.sleep
// exists.
const recordHook = `#!/bin/sh
echo "$1 $2 prev=$VMSTATED_PREVIOUS_STATE pid=${VMSTATED_PID:-none} restarts=$VMSTATED_RESTARTS cfg=$VMSTATED_CFG_DESCRIPTION" >> "%s"
echo "hook $2 says hello"
if [ -f "$VMSTATED_CONFIG_DIR/$2.sleep" ]; then sleep 1000; fi
if [ -f "$VMSTATED_CONFIG_DIR/$2.exit" ]; then exit $(cat "$VMSTATED_CONFIG_DIR/$2.exit"); fi
exit 0
`

var allHooks = []statemachine.State{
	statemachine.StartNetwork, statemachine.StartStorage, statemachine.Running, statemachine.Paused,
	statemachine.Restarting, statemachine.Restarted, statemachine.Stopping, statemachine.StopStorage,
	statemachine.StopNetwork, statemachine.Stopped, statemachine.Failed,
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, base: base, root: filepath.Join(base, "etc"), record: filepath.Join(base, "record"),
		drain: 100 * time.Millisecond}
	for _, d := range []string{f.root, filepath.Join(base, "run"), filepath.Join(base, "log"), filepath.Join(base, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.start()
	t.Cleanup(func() {
		// Stop whatever still runs, then end the actors.
		sctx, c := context.WithTimeout(context.Background(), waitLimit)
		defer c()
		for _, st := range f.sup.List() {
			if err := f.sup.Stop(sctx, st.Name, StopOptions{Force: true}); err == nil || errors.Is(err, statemachine.ErrNotAllowed) {
				_ = f.sup.waitSettled(sctx, st.Name)
			}
		}
		f.stop()
	})
	return f
}

// start creates a supervisor on the fixture's directories, as a daemon
// start does.
func (f *fixture) start() {
	f.mu.Lock()
	f.seen = nil
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.sup = New(ctx, Options{
		RunDir:    filepath.Join(f.base, "run"),
		LogDir:    filepath.Join(f.base, "log"),
		StateDir:  filepath.Join(f.base, "state"),
		Drivers:   map[string]hypervisor.Driver{"exec": exec.New(), "qemu": qemu.New()},
		Logf:      f.t.Logf,
		HookDrain: f.drain,
	})
	w, err := config.NewWatcher(f.root, config.WatchOptions{Debounce: 20 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	f.w = w
	f.watchDone = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = w.Run(ctx)
	}(f.watchDone)
	f.sub = f.sup.Bus().Subscribe(0)
	sub := f.sub
	f.subDone = make(chan struct{})
	done := f.subDone
	go func() {
		defer close(done)
		for e := range sub.C() {
			f.mu.Lock()
			f.seen = append(f.seen, e)
			f.mu.Unlock()
		}
	}()
}

// stop ends the supervisor as a daemon exit does: the actors end, the VMs
// keep running.
func (f *fixture) stop() {
	f.cancel()
	<-f.watchDone
	if f.following {
		<-f.followDone
		f.following = false
	}
	f.sup.Wait()
	<-f.subDone
}

// follow starts applying the watcher's changes, as the daemon does after
// Load.
func (f *fixture) follow() {
	if f.following {
		return
	}
	f.following = true
	f.followDone = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		f.sup.Follow(f.w.Changes())
	}(f.followDone)
}

// restart simulates a daemon restart and loads the config root again.
func (f *fixture) restart(opts LoadOptions) {
	f.t.Helper()
	f.stop()
	f.start()
	f.sup.Load(f.w.Initial(), opts)
	f.follow()
}

// addVM writes a VM directory with the given config body and every hook.
func (f *fixture) addVM(name, body string) string {
	f.t.Helper()
	dir := filepath.Join(f.root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	f.writeConfig(name, body)
	for _, h := range allHooks {
		path := filepath.Join(dir, string(h))
		if err := os.WriteFile(path, []byte(fmt.Sprintf(recordHook, f.record)), 0o755); err != nil {
			f.t.Fatal(err)
		}
	}
	return dir
}

func (f *fixture) writeConfig(name, body string) {
	f.t.Helper()
	cfg := fmt.Sprintf("%s {\n hypervisor = exec;\n description = test-%s;\n%s\n}\n", name, name, body)
	if err := os.WriteFile(filepath.Join(f.root, name, "config"), []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// set creates (or with "" removes) a control file of a VM's hooks.
func (f *fixture) set(vm, file, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, vm, file)
	if content == "" {
		_ = os.Remove(p)
		return
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// holdHook makes vm's hook of st record its start like the other hooks,
// then wait until the returned file exists, then record
// "<vm> <state>-done". It returns the file's path.
func (f *fixture) holdHook(vm string, st statemachine.State) string {
	f.t.Helper()
	release := filepath.Join(f.base, vm+"-"+string(st)+".release")
	hook := fmt.Sprintf("#!/bin/sh\necho \"$1 $2\" >> %[1]q\nwhile [ ! -f %[2]q ]; do sleep 0.02; done\necho \"$1 $2-done\" >> %[1]q\n",
		f.record, release)
	if err := os.WriteFile(filepath.Join(f.root, vm, string(st)), []byte(hook), 0o755); err != nil {
		f.t.Fatal(err)
	}
	return release
}

// sync rescans the config root the way POST /v1/reload does and returns
// once the changes have reached the VMs.
func (f *fixture) sync() ReloadSummary {
	f.t.Helper()
	f.follow()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	sum, err := f.sup.Reload(ctx, f.w.Request)
	if err != nil {
		f.t.Fatalf("reload: %v", err)
	}
	return sum
}

func loadRoot(t *testing.T, root string) *config.Snapshot {
	t.Helper()
	snap := config.LoadRoot(root, config.LoadOptions{})
	if snap.RootErr != nil {
		t.Fatal(snap.RootErr)
	}
	return snap
}

// waitFor waits until cond holds, looking again at every event of the
// bus; a slow tick covers what no event announces (restarts leaving the
// budget window).
func (f *fixture) waitFor(cond func() bool) bool {
	f.t.Helper()
	sub := f.sup.Bus().Subscribe(0)
	defer func() { sub.Close() }()
	guard := time.NewTimer(waitLimit)
	defer guard.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for !cond() {
		select {
		case _, ok := <-sub.C():
			if !ok {
				sub = f.sup.Bus().Subscribe(0)
			}
		case <-tick.C:
		case <-guard.C:
			return cond()
		}
	}
	return true
}

// waitState waits until vm is in state want.
func (f *fixture) waitState(vm string, want statemachine.State) Status {
	f.t.Helper()
	var st Status
	if f.waitFor(func() bool {
		var err error
		st, err = f.sup.Get(vm)
		return err == nil && st.State == want
	}) {
		return st
	}
	f.t.Fatalf("%s did not reach %s; it is %s (%s)\nrecord:\n%s", vm, want, st.State, st.Reason, f.records())
	return st
}

// waitUp waits until vm is up: running, its running hook finished.
func (f *fixture) waitUp(vm string) Status {
	f.t.Helper()
	var st Status
	if f.waitFor(func() bool {
		var err error
		st, err = f.sup.Get(vm)
		return err == nil && st.Up()
	}) {
		return st
	}
	f.t.Fatalf("%s is not up: %+v", vm, st)
	return st
}

// waitPID waits until vm runs with a known hypervisor pid.
func (f *fixture) waitPID(vm string) Status {
	f.t.Helper()
	var st Status
	if f.waitFor(func() bool {
		var err error
		st, err = f.sup.Get(vm)
		return err == nil && st.State == sRunning && st.PID != 0
	}) {
		return st
	}
	f.t.Fatalf("%s has no running hypervisor: %+v", vm, st)
	return st
}

// path returns the states vm entered, in order.
func (f *fixture) path(vm string) []statemachine.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []statemachine.State
	for _, e := range f.seen {
		if e.Kind == KindTransition && e.VM == vm {
			out = append(out, e.To)
		}
	}
	return out
}

// waitPath waits until vm has entered exactly the states in want (so far).
func (f *fixture) waitPath(vm string, want ...statemachine.State) {
	f.t.Helper()
	f.waitFor(func() bool { return len(f.path(vm)) >= len(want) })
	if got := f.path(vm); fmt.Sprint(got) != fmt.Sprint(want) {
		f.t.Fatalf("%s went through %v, want %v", vm, got, want)
	}
}

func (f *fixture) records() string {
	b, _ := os.ReadFile(f.record)
	return string(b)
}

// hookRuns returns "<vm> <state>" for every hook run so far.
func (f *fixture) hookRuns(vm string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(f.records()), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == vm && !strings.HasSuffix(fields[1], "-done") {
			out = append(out, fields[1])
		}
	}
	return out
}

// waitHooks waits until the hooks of vm have run exactly as want.
func (f *fixture) waitHooks(vm string, want ...statemachine.State) {
	f.t.Helper()
	w := make([]string, len(want))
	for i, s := range want {
		w[i] = string(s)
	}
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		got := f.hookRuns(vm)
		if strings.Join(got, " ") == strings.Join(w, " ") {
			return
		}
		if len(got) > len(w) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("hooks of %s ran %v, want %v", vm, f.hookRuns(vm), w)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return c
}

const sleeper = `exec { command = [ "/bin/sleep", "1000" ]; }`

var (
	sStopped      = statemachine.Stopped
	sStartNetwork = statemachine.StartNetwork
	sStartStorage = statemachine.StartStorage
	sRunning      = statemachine.Running
	sPaused       = statemachine.Paused
	sRestarting   = statemachine.Restarting
	sRestarted    = statemachine.Restarted
	sStopping     = statemachine.Stopping
	sStopStorage  = statemachine.StopStorage
	sStopNetwork  = statemachine.StopNetwork
	sFailed       = statemachine.Failed
)

func TestStartStopCycle(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sRunning)
	if st.PID == 0 || st.Hypervisor != "exec" || st.Desired != sRunning {
		t.Fatalf("status %+v", st)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st = f.waitState("vm0", sStopped)
	if st.PID != 0 || st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitPoweroff {
		t.Fatalf("after stop: %+v (exit %+v)", st, st.LastExit)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sStopped)
	f.waitPath("vm0", sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sStopped)

	// The environment reached the hooks: the pid while the hypervisor ran,
	// the previous state, and config values.
	rec := f.records()
	for _, want := range []string{
		"vm0 start_network prev=stopped pid=none restarts=0 cfg=test-vm0",
		"vm0 running prev=start_storage pid=" + fmt.Sprint(f.pidOf(rec, "running")),
		"vm0 stop_storage prev=stopping pid=none",
	} {
		if !strings.Contains(rec, want) {
			t.Errorf("record lacks %q:\n%s", want, rec)
		}
	}
	// The log has the transitions and the hooks' output.
	logPath, _ := f.sup.LogPath("vm0")
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[vmstated] stopped -> start_network (start): start requested",
		"[hook start_network] hook start_network says hello", "hypervisor exited: poweroff"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("log lacks %q:\n%s", want, data)
		}
	}
}

func (f *fixture) pidOf(rec, state string) string {
	for _, line := range strings.Split(rec, "\n") {
		if strings.Contains(line, " "+state+" ") {
			for _, fld := range strings.Fields(line) {
				if strings.HasPrefix(fld, "pid=") {
					return strings.TrimPrefix(fld, "pid=")
				}
			}
		}
	}
	return "?"
}

func TestHookFailureTearsDownCompletedSteps(t *testing.T) {
	tests := []struct {
		failing statemachine.State
		hooks   []statemachine.State
	}{
		{sStartNetwork, []statemachine.State{sStartNetwork, sFailed}},
		{sStartStorage, []statemachine.State{sStartNetwork, sStartStorage, sStopNetwork, sFailed}},
		{sRunning, []statemachine.State{sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sFailed}},
		{sStopping, []statemachine.State{sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sFailed}},
		{sStopStorage, []statemachine.State{sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sFailed}},
		{sStopNetwork, []statemachine.State{sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sFailed}},
	}
	for _, tt := range tests {
		t.Run(string(tt.failing), func(t *testing.T) {
			f := newFixture(t)
			f.addVM("vm0", sleeper)
			f.set("vm0", string(tt.failing)+".exit", "7")
			f.sync()
			if err := f.sup.Start(ctx(t), "vm0"); err != nil {
				t.Fatal(err)
			}
			if tt.failing >= sStopping || tt.failing == sStopNetwork || tt.failing == sStopStorage {
				f.waitState("vm0", sRunning)
				if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			st := f.waitState("vm0", sFailed)
			want := fmt.Sprintf("hook %s exited with status 7", tt.failing)
			if !strings.Contains(st.Reason, want) {
				t.Fatalf("reason %q, want it to contain %q", st.Reason, want)
			}
			f.waitHooks("vm0", tt.hooks...)
			if st.PID != 0 {
				t.Fatalf("hypervisor still recorded: %+v", st)
			}
			// Failure mode holds until failreset.
			if err := f.sup.Start(ctx(t), "vm0"); err == nil || !strings.Contains(err.Error(), "failreset") {
				t.Fatalf("start in failed: %v", err)
			}
			f.set("vm0", string(tt.failing)+".exit", "")
			if err := f.sup.FailReset(ctx(t), "vm0"); err != nil {
				t.Fatal(err)
			}
			f.waitState("vm0", sStopped)
			if err := f.sup.Start(ctx(t), "vm0"); err != nil {
				t.Fatal(err)
			}
			f.waitState("vm0", sRunning)
		})
	}
}

func TestLaunchFailureTearsDownStorageAndNetwork(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", `exec { command = [ "/nonexistent/hypervisor" ]; }`)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sFailed)
	if !strings.Contains(st.Reason, "launch failed") || !strings.Contains(st.Reason, "/nonexistent/hypervisor") {
		t.Fatalf("reason %q", st.Reason)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sStopStorage, sStopNetwork, sFailed)
}

func TestCrashLoopEndsInFailedAfterMaxrestart(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", `maxrestart = 2; maxrestarttime = 300;
		exec { command = [ "/bin/sh", "-c", "exit 3" ]; }`)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sFailed)
	if !strings.Contains(st.Reason, "3 restarts within 5m, maxrestart is 2") {
		t.Fatalf("reason %q", st.Reason)
	}
	// Exactly two restarts happened, without network or storage steps. (A
	// crash can come before the restarted VM reached running.)
	f.waitHooks("vm0", append(f.pathHooks("vm0"), sFailed)...)
	runs := strings.Join(f.hookRuns("vm0"), " ")
	if strings.Count(runs, "restarting") != 2 || strings.Count(runs, "start_") != 2 ||
		!strings.HasSuffix(runs, "stopping stop_storage stop_network failed") {
		t.Fatalf("hooks ran: %s", runs)
	}
	if st.Restarts != 3 || st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitCrash {
		t.Fatalf("status %+v exit %+v", st, st.LastExit)
	}
	// failreset clears the history; a good program then runs.
	f.writeConfig("vm0", "maxrestart = 2; maxrestarttime = 300;\n"+sleeper)
	f.sync()
	if err := f.sup.FailReset(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	st = f.waitState("vm0", sStopped)
	if st.Restarts != 0 || st.Pending {
		t.Fatalf("after failreset: %+v", st)
	}
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
}

func TestGuestRebootRelaunchesWithoutNetworkAndStorage(t *testing.T) {
	f := newFixture(t)
	dir := f.addVM("vm0", `exec { command = [ "/bin/sh", "-c", "if [ -f reboot ]; then exec sleep 1000; fi; touch reboot; exit 100" ]; reboot_exit_codes = [ 100 ]; }`)
	_ = dir
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitPath("vm0", sStartNetwork, sStartStorage, sRunning, sRestarting, sRestarted, sRunning)
	st := f.waitState("vm0", sRunning)
	if st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitReboot || st.Restarts != 1 {
		t.Fatalf("status %+v exit %+v", st, st.LastExit)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning, sRestarting, sRestarted, sRunning)
}

func TestGuestPoweroffStops(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", `exec { command = [ "/bin/sh", "-c", "sleep 0.2; exit 0" ]; }`)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitPath("vm0", sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sStopped)
	st := f.waitState("vm0", sStopped)
	if st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitPoweroff || st.Desired != sStopped {
		t.Fatalf("status %+v", st)
	}
}

// stubborn is the exec config of a guest that ignores the stop signal; it
// creates the file ready once the signal is ignored, so a test can stop
// it only then.
func stubborn(ready string, stopTimeout int) string {
	return fmt.Sprintf(`stop_timeout = %d;
		exec { command = [ "/bin/sh", "-c", "trap '' TERM; : > %s; exec sleep 1000" ]; }`, stopTimeout, ready)
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGracefulStopFallsBackToForce(t *testing.T) {
	f := newFixture(t)
	ready := filepath.Join(f.base, "vm0.ready")
	f.addVM("vm0", stubborn(ready, 1))
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	// Not before the guest ignores SIGTERM, or the stop is not forced.
	waitFile(t, ready)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sStopped)
	if st.LastExit != nil {
		t.Logf("last exit %+v", st.LastExit)
	}
	logPath, _ := f.sup.LogPath("vm0")
	data, _ := os.ReadFile(logPath)
	if !strings.Contains(string(data), "guest did not power off within 1s; forcing") {
		t.Fatalf("log lacks the forced path:\n%s", data)
	}
}

func TestForcedStopWhileGracefulStopWaits(t *testing.T) {
	f := newFixture(t)
	ready := filepath.Join(f.base, "vm0.ready")
	f.addVM("vm0", stubborn(ready, 1000))
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready)
	f.waitState("vm0", sRunning)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStopping)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStopped)
}

func TestStopWhileStartingTakesEffectAtStepBoundary(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	// start_storage succeeds, slowly: the stop arrives while it runs.
	slow := fmt.Sprintf("#!/bin/sh\necho \"$1 $2\" >> %q\nsleep 1\n", f.record)
	if err := os.WriteFile(filepath.Join(f.root, "vm0", "start_storage"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStartStorage)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	// The step completes, then the VM is torn down from there: storage
	// and network, and no hypervisor is launched.
	st := f.waitState("vm0", sStopped)
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sStopStorage, sStopNetwork, sStopped)
	if st.LastExit != nil || st.Reason != "" {
		t.Fatalf("status %+v", st)
	}
	logPath, _ := f.sup.LogPath("vm0")
	data, _ := os.ReadFile(logPath)
	if strings.Contains(string(data), "exec started") {
		t.Fatalf("a hypervisor was launched:\n%s", data)
	}
}

func TestStartFailsWhileStartHookTimesOut(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper+"\nhook_timeouts { start_storage = 1s; }")
	f.set("vm0", "start_storage.sleep", "x")
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sFailed)
	if !strings.Contains(st.Reason, "timed out after 1s") {
		t.Fatalf("reason %q", st.Reason)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sStopNetwork, sFailed)
}

func TestStopDuringStartNetworkAborts(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	// Make start_network slow but successful.
	slow := fmt.Sprintf("#!/bin/sh\necho \"$1 $2\" >> %q\nsleep 1\n", f.record)
	if err := os.WriteFile(filepath.Join(f.root, "vm0", "start_network"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStartNetwork)
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStopped)
	f.waitHooks("vm0", sStartNetwork, sStopNetwork, sStopped)
}

func TestHungHookBlocksOnlyItsVM(t *testing.T) {
	f := newFixture(t)
	f.addVM("slow", sleeper+"\nhook_timeout = 5;")
	f.set("slow", "start_network.sleep", "x")
	f.addVM("fast", sleeper)
	f.sync()
	if err := f.sup.Start(ctx(t), "slow"); err != nil {
		t.Fatal(err)
	}
	f.waitState("slow", sStartNetwork)
	for i := 0; i < 2; i++ {
		if err := f.sup.Start(ctx(t), "fast"); err != nil {
			t.Fatal(err)
		}
		f.waitState("fast", sRunning)
		if err := f.sup.Stop(ctx(t), "fast", StopOptions{}); err != nil {
			t.Fatal(err)
		}
		f.waitState("fast", sStopped)
		if st, err := f.sup.Get("slow"); err != nil || st.State != sStartNetwork {
			t.Fatalf("slow: %+v %v", st, err)
		}
		if len(f.sup.List()) != 2 {
			t.Fatal("list incomplete")
		}
	}
}

func TestDependsOrder(t *testing.T) {
	f := newFixture(t)
	f.addVM("db", sleeper)
	f.addVM("app", sleeper+"\ndepends = [ db ];")
	f.addVM("web", sleeper+"\ndepends = [ app ];")
	f.sync()
	if err := f.sup.Start(ctx(t), "web"); err != nil {
		t.Fatal(err)
	}
	f.waitState("web", sRunning)
	f.waitState("app", sRunning)
	f.waitState("db", sRunning)
	order := f.waitRunOrder(sRunning, 3)
	if strings.Join(order, " ") != "db app web" {
		t.Fatalf("running order %v", order)
	}
}

// pathHooks returns the states vm entered before failed, for comparison
// with the hooks that ran.
func (f *fixture) pathHooks(vm string) []statemachine.State {
	p := f.path(vm)
	if len(p) > 0 && p[len(p)-1] == sFailed {
		p = p[:len(p)-1]
	}
	return p
}

// waitRunOrder waits until n VMs entered st and lists them in order.
func (f *fixture) waitRunOrder(st statemachine.State, n int) []string {
	f.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if got := f.runOrder(st); len(got) >= n {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	return f.runOrder(st)
}

// runOrder lists the VMs in the order they entered state st.
func (f *fixture) runOrder(st statemachine.State) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.seen {
		if e.Kind == KindTransition && e.To == st {
			out = append(out, e.VM)
		}
	}
	return out
}

// A dependency that fails on its way up fails its dependant with the
// reason, whether a start hook fails or its running hook does (it is not
// up until that has finished).
func TestDependencyFailureFailsDependant(t *testing.T) {
	for _, hook := range []statemachine.State{sStartNetwork, sRunning} {
		t.Run(string(hook), func(t *testing.T) {
			f := newFixture(t)
			f.addVM("db", sleeper)
			f.set("db", string(hook)+".exit", "1")
			f.addVM("app", sleeper+"\ndepends = [ db ];")
			f.sync()
			if err := f.sup.Start(ctx(t), "app"); err != nil {
				t.Fatal(err)
			}
			st := f.waitState("app", sFailed)
			if !strings.Contains(st.Reason, "depends on db") {
				t.Fatalf("reason %q", st.Reason)
			}
			f.waitState("db", sFailed)
			f.waitHooks("app", sFailed)
		})
	}
}

func TestConfigChangeWhileRunningIsPending(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper+"\ncpus = 1;")
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	f.writeConfig("vm0", sleeper+"\ncpus = 2;")
	f.sync()
	st := f.waitPending("vm0", true)
	if st.CPUs != 1 {
		t.Fatalf("running VM took the new config at once: %+v", st)
	}
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sStopped)
	st = f.waitPending("vm0", false)
	if st.CPUs != 2 {
		t.Fatalf("stopped VM did not take the new config: %+v", st)
	}
	// While stopped, a change applies at once: in force by the time
	// the reload returns.
	f.writeConfig("vm0", sleeper+"\ncpus = 3;")
	f.sync()
	if st, _ = f.sup.Get("vm0"); st.CPUs != 3 || st.Pending {
		t.Fatalf("change while stopped not applied when the reload returned: %+v", st)
	}
}

func (f *fixture) waitPending(vm string, want bool) Status {
	f.t.Helper()
	var st Status
	if f.waitFor(func() bool {
		var err error
		st, err = f.sup.Get(vm)
		return err == nil && st.Pending == want
	}) {
		return st
	}
	f.t.Fatalf("%s pending never became %v", vm, want)
	return Status{}
}

func TestBrokenConfigKeepsOldOne(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.addVM("good", sleeper)
	f.sync()
	if err := os.WriteFile(filepath.Join(f.root, "vm0", "config"), []byte("vm0 { cpus = ; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.sync()
	// The reload has returned: the error is in the status by now.
	st, _ := f.sup.Get("vm0")
	if !strings.Contains(st.ConfigError, "config:1:") || st.Hypervisor != "exec" {
		t.Fatalf("status %+v", st)
	}
	// The old config still starts the VM; the good one is untouched.
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	if st, err := f.sup.Get("good"); err != nil || st.ConfigError != "" {
		t.Fatalf("good VM: %+v %v", st, err)
	}
}

func TestRemovedWhileRunningKeepsRunningUntilStopped(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning)
	hooks := filepath.Join(t.TempDir(), "kept")
	if err := os.Rename(filepath.Join(f.root, "vm0"), hooks); err != nil {
		t.Fatal(err)
	}
	f.sync()
	// The reload has returned: the removal is in the status by now.
	if st, _ := f.sup.Get("vm0"); !st.Removed || st.State != sRunning || st.PID == 0 {
		t.Fatalf("removed VM when the reload returned: %+v, want it marked removed and running", st)
	}
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if !f.waitFor(func() bool { _, err := f.sup.Get("vm0"); return err != nil }) {
		t.Fatal("never dropped")
	}
}

func TestPauseUnpauseAndUserRestart(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	c := ctx(t)
	if err := f.sup.Start(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	first := f.waitState("vm0", sRunning)
	if err := f.sup.Pause(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sPaused)
	if err := f.sup.Pause(c, "vm0"); err == nil {
		t.Fatal("pause of a paused VM accepted")
	}
	if err := f.sup.Unpause(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	if err := f.sup.Restart(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitPath("vm0", sStartNetwork, sStartStorage, sRunning, sPaused, sRunning, sRestarting, sRestarted, sRunning)
	st := f.waitState("vm0", sRunning)
	if st.PID == first.PID || st.Restarts != 0 {
		t.Fatalf("after user restart: pid %d (was %d), restarts %d", st.PID, first.PID, st.Restarts)
	}
}

func TestCommandErrors(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	c := ctx(t)
	if err := f.sup.Start(c, "nope"); err == nil || !strings.Contains(err.Error(), "no such VM") {
		t.Fatalf("unknown VM: %v", err)
	}
	err := f.sup.Stop(c, "vm0", StopOptions{})
	if err == nil || err.Error() != "cannot stop vm0: it is stopped" {
		t.Fatalf("stop of stopped VM: %v", err)
	}
	if err := f.sup.Reset(c, "vm0"); err == nil {
		t.Fatal("reset of a stopped VM accepted")
	}
	if err := f.sup.Start(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	if _, err := f.sup.Info(c, "vm0"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("info on exec: %v", err)
	}
}

// A dependant starts once the VM it depends on is up: running, with its
// running hook finished. Until then the status names the pending hook.
func TestDependantWaitsForRunningHook(t *testing.T) {
	f := newFixture(t)
	f.addVM("db", sleeper)
	f.addVM("app", sleeper+"\ndepends = [ db ];")
	release := f.holdHook("db", sRunning)
	f.sync()
	if err := f.sup.Start(ctx(t), "app"); err != nil {
		t.Fatal(err)
	}
	f.waitHooks("db", sStartNetwork, sStartStorage, sRunning)
	st, _ := f.sup.Get("db")
	if st.State != sRunning || st.Hook != sRunning || st.Up() {
		t.Fatalf("db while its running hook runs: %+v", st)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitState("app", sRunning)
	if st, _ := f.sup.Get("db"); !st.Up() {
		t.Fatalf("db not up once its hook finished: %+v", st)
	}
	lines := strings.Split(strings.TrimSpace(f.records()), "\n")
	done, appStart := -1, -1
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "db running-done"):
			done = i
		case strings.HasPrefix(l, "app start_network") && appStart < 0:
			appStart = i
		}
	}
	if done < 0 || appStart < done {
		t.Fatalf("app started before db's running hook finished:\n%s", f.records())
	}
	// The hook's end is an event of its own.
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.seen {
		if e.Kind == KindHook && e.VM == "db" && e.To == sRunning && e.Reason == "" {
			return
		}
	}
	t.Fatal("no hook event for db's running hook")
}

// The status that goes out with a VM's arrival in failed or stopped
// already wants it stopped: whoever reads it on the event (vmstatedctl
// start -w, then status) never sees a VM at rest that still wants to run.
func TestDesiredStoppedWhenAtRest(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.set("vm0", string(sStartStorage)+".exit", "1")
	f.sync()
	sub := f.sup.Bus().Subscribe(0)
	defer sub.Close()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(waitLimit)
	for {
		select {
		case e := <-sub.C():
			if e.Kind != KindTransition || (e.To != sFailed && e.To != sStopped) {
				continue
			}
			st, err := f.sup.Get("vm0")
			if err != nil || st.Desired != sStopped {
				t.Fatalf("on reaching %s: desired %s (%v), want stopped", e.To, st.Desired, err)
			}
			if e.To == sFailed {
				return
			}
		case <-timeout:
			t.Fatal("vm0 never failed")
		}
	}
}

// A step of the start with nothing to run (no hook file, no network) is
// done in the actor, with no work of its own, and gives the same events
// in the same order as one that ran; a step with a hook still runs it.
func TestStartStepsWithNothingToRun(t *testing.T) {
	f := newFixture(t)
	dir := f.addVM("vm0", sleeper)
	for _, h := range []statemachine.State{statemachine.StartNetwork, statemachine.Running} {
		if err := os.Remove(filepath.Join(dir, string(h))); err != nil {
			t.Fatal(err)
		}
	}
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	f.waitHooks("vm0", sStartStorage)
	var got []string
	deadline := time.Now().Add(waitLimit)
	for len(got) < 6 && time.Now().Before(deadline) {
		got = got[:0]
		f.mu.Lock()
		for _, e := range f.seen {
			if e.VM != "vm0" || e.Kind != KindTransition && e.Kind != KindHook {
				continue
			}
			s := string(e.Kind) + " " + string(e.To)
			if e.Skipped {
				s += " skipped"
			}
			got = append(got, s)
		}
		f.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	want := []string{"transition start_network", "hook start_network skipped", "transition start_storage",
		"hook start_storage", "transition running", "hook running skipped"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	// Which steps the actor found with nothing to run: asked in the actor.
	v, err := f.sup.lookup("vm0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := map[statemachine.State]bool{}
	done := make(chan struct{})
	if err := v.send(ctx(t), inspect{fn: func() {
		for _, st := range []statemachine.State{sStartNetwork, sStartStorage, sRunning, sStopping, sStopped} {
			nothing[st] = v.nothingToRun(ctx(t), st)
		}
	}, done: done}); err != nil {
		t.Fatal(err)
	}
	<-done
	if want := map[statemachine.State]bool{sStartNetwork: true, sStartStorage: false, sRunning: true, sStopping: false, sStopped: false}; !reflect.DeepEqual(nothing, want) {
		t.Errorf("nothing to run: %v, want %v", nothing, want)
	}
}
