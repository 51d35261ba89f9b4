//go:build linux

package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/daemon"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// guard bounds every wait. It only catches deadlocks: nothing asserts on
// how long a step took.
const guard = 60 * time.Second

// hookStates are the states a hook can be named after.
var hookStates = []string{
	"stopped", "start_network", "start_storage", "running", "paused",
	"restarting", "restarted", "stopping", "stop_storage", "stop_network", "failed",
	"suspending", "suspended",
}

// env is one test's world: a config root, a work directory for hook
// records and control files, and the daemon's directories.
type env struct {
	t        *testing.T
	dir      string
	root     string // config root, one directory per VM
	work     string // hook records and control files
	logDir   string
	stateDir string
	socket   string
	pidfile  string
	notify   string // NOTIFY_SOCKET path
	runDir   string // VM runtime directories (-R)
	// defaultRunDir is the runtime directory the daemon would use without
	// -R; nothing may appear there.
	defaultRunDir string
	environ       []string
	// relative makes start run the daemon in dir, with its path flags
	// relative to it.
	relative bool
	// netns, when set, is the network namespace the daemon runs in (ip
	// netns exec), so that what it sets up never touches the host's.
	netns string

	mu      sync.Mutex
	vms     []string
	daemons []*daemonProc
	bg      []int // background daemons' pids
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir, err := os.MkdirTemp(base, "t")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:        t,
		dir:      dir,
		root:     filepath.Join(dir, "root"),
		work:     filepath.Join(dir, "work"),
		logDir:   filepath.Join(dir, "log"),
		stateDir: filepath.Join(dir, "state"),
		socket:   filepath.Join(dir, "ctl.sock"),
		pidfile:  filepath.Join(dir, "vmstated.pid"),
		notify:   filepath.Join(dir, "notify.sock"),
	}
	for _, d := range []string{e.root, e.work, filepath.Join(dir, "home"), filepath.Join(dir, "xdg")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{
		"PATH":            os.Getenv("PATH"),
		"HOME":            filepath.Join(dir, "home"),
		"XDG_RUNTIME_DIR": filepath.Join(dir, "xdg"),
		"XDG_STATE_HOME":  filepath.Join(dir, "xdg", "state"),
		"XDG_CONFIG_HOME": filepath.Join(dir, "xdg", "config"),
		"GORACE":          "log_path=" + filepath.Join(dir, "race"),
	}
	for k, v := range vars {
		e.environ = append(e.environ, k+"="+v)
	}
	e.runDir = filepath.Join(dir, "run")
	// Nothing may land in the defaults for this environment (as root, the
	// system run directory).
	e.defaultRunDir = daemon.DefaultPaths(os.Geteuid(), runtime.GOOS, func(k string) string { return vars[k] }).RunDir
	t.Cleanup(e.cleanup)
	return e
}

// name returns the full name of a test VM: unique to this run.
func (e *env) name(short string) string { return short + "-" + runID }

// addVM creates a VM directory holding a config with body inside the VM's
// section and the recording hook under every state name. It returns the
// VM's full name.
func (e *env) addVM(short, body string) string {
	e.t.Helper()
	name := e.name(short)
	dir := filepath.Join(e.root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	hook, err := os.ReadFile("testdata/hook.sh")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, st := range hookStates {
		if err := os.WriteFile(filepath.Join(dir, st), hook, 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	e.writeConfig(name, body)
	e.mu.Lock()
	e.vms = append(e.vms, name)
	e.mu.Unlock()
	return name
}

// writeConfig replaces a VM's config the way editors do: a new file
// renamed over the old one, so the daemon never reads half a file.
func (e *env) writeConfig(name, body string) {
	e.t.Helper()
	text := fmt.Sprintf("%s {\n%s\n}\n", name, body)
	e.writeFile(filepath.Join(e.root, name, "config"), text)
}

func (e *env) writeFile(path, text string) {
	e.t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".e2e.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		e.t.Fatal(err)
	}
}

// execVM is the config body of an exec VM running argv.
func execVM(argv []string, extra string) string {
	cmd, _ := json.Marshal(argv)
	return fmt.Sprintf("    hypervisor = exec;\n    exec { command = %s; %s }\n", cmd, extra)
}

// stubborn is the config body of a VM whose process ignores SIGTERM, the
// exec driver's stop signal; wait for it with waitStubborn before a stop,
// or the signal may come before the trap is set.
func (e *env) stubborn(short, extra string) string {
	ready := filepath.Join(e.work, e.name(short)+".trapped")
	return execVM([]string{"/bin/sh", "-c", "trap '' TERM; : > " + ready + "; exec /bin/sleep 1000"}, "") + extra
}

// waitStubborn waits until the stubborn VM short has set its trap.
func (e *env) waitStubborn(short string) {
	e.t.Helper()
	ready := filepath.Join(e.work, e.name(short)+".trapped")
	waitUntil(e.t, short+" to ignore SIGTERM", func() bool { return exists(ready) })
}

// sleeper is the config body of a VM whose process sleeps until stopped.
func sleeper(extra string) string {
	return execVM([]string{"/bin/sleep", "1000"}, "") + extra
}

// control creates (on) or removes a hook control file.
func (e *env) control(name, state, kind string, on bool) {
	e.t.Helper()
	p := filepath.Join(e.work, name+"."+state+"."+kind)
	if on {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
}

// hookCall is one recorded hook run.
type hookCall struct {
	state, prev, pid, restarts, reason string
}

func (h hookCall) String() string { return h.state }

// records returns the hook runs of a VM so far, in order.
func (e *env) records(name string) []hookCall {
	b, err := os.ReadFile(filepath.Join(e.work, name+".rec"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
	var out []hookCall
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 6)
		if len(f) < 6 {
			e.t.Fatalf("bad record line %q", line)
		}
		out = append(out, hookCall{
			state:    f[1],
			prev:     strings.TrimPrefix(f[2], "prev="),
			pid:      strings.TrimPrefix(f[3], "pid="),
			restarts: strings.TrimPrefix(f[4], "restarts="),
			reason:   strings.TrimPrefix(f[5], "reason="),
		})
	}
	return out
}

func states(calls []hookCall) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.state
	}
	return out
}

// waitHooks waits until a VM's hooks have run len(want) times and checks
// they ran exactly in the order want.
func (e *env) waitHooks(name string, want ...string) []hookCall {
	e.t.Helper()
	var got []hookCall
	waitUntil(e.t, fmt.Sprintf("hooks of %s: %v", name, want), func() bool {
		got = e.records(name)
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i].state != want[i] {
				return true // wrong already: no use waiting
			}
		}
		return len(got) >= len(want)
	})
	if g := strings.Join(states(got), " "); g != strings.Join(want, " ") {
		e.t.Fatalf("hooks of %s ran as\n\t%s\nwant\n\t%s", name, g, strings.Join(want, " "))
	}
	return got
}

// hookEnv returns the environment, cwd, stdin and argc a VM's hook for
// state last saw.
func (e *env) hookEnv(name, state string) map[string]string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.work, name+"."+state+".env"))
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// allRecords returns "vm state" for every hook run of every VM, in order.
func (e *env) allRecords() []string {
	b, _ := os.ReadFile(filepath.Join(e.work, "all.rec"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// waitLastHook waits until a VM's hook for state has run and returns all
// hook runs so far.
func (e *env) waitLastHook(name, state string) []hookCall {
	e.t.Helper()
	var got []hookCall
	waitUntil(e.t, fmt.Sprintf("hook %s of %s", state, name), func() bool {
		got = e.records(name)
		return len(got) > 0 && got[len(got)-1].state == state
	})
	return got
}

// waitHookRan waits until a VM's hook for state has run at least once and
// returns all hook runs so far.
func (e *env) waitHookRan(name, state string) []hookCall {
	e.t.Helper()
	var got []hookCall
	waitUntil(e.t, fmt.Sprintf("hook %s of %s", state, name), func() bool {
		got = e.records(name)
		for _, c := range got {
			if c.state == state {
				return true
			}
		}
		return false
	})
	return got
}

// waitUntil polls cond until it holds; guard only catches deadlocks.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", guard, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemonProc is a vmstated running in the foreground as the test's child.
type daemonProc struct {
	e      *env
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error
	notes  chan string
	c      *api.Client
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// flags are the daemon's path flags for this env.
func (e *env) flags() []string {
	f := []string{"-c", e.root, "-l", e.logDir, "-S", e.stateDir, "-s", e.socket, "-p", e.pidfile, "-R", e.runDir}
	if e.relative {
		for i := 1; i < len(f); i += 2 {
			if rel, err := filepath.Rel(e.dir, f[i]); err == nil {
				f[i] = rel
			}
		}
	}
	return f
}

// start runs the daemon in the foreground and returns once it said
// READY=1 on NOTIFY_SOCKET.
func (e *env) start(extra ...string) *daemonProc {
	e.t.Helper()
	d := &daemonProc{e: e, stderr: &lockedBuffer{}, done: make(chan struct{})}
	ln, notes := e.listenNotifyConn()
	d.notes = notes
	args := append([]string{"-f"}, e.flags()...)
	d.cmd = exec.Command(vmstatedBin, append(args, extra...)...)
	if e.netns != "" {
		// ip netns exec execs the daemon in its own process: the pid,
		// and the signals sent to it, are the daemon's.
		d.cmd = exec.Command("ip", append([]string{"netns", "exec", e.netns, vmstatedBin}, append(args, extra...)...)...)
	}
	d.cmd.Env = append(e.environ, "NOTIFY_SOCKET="+e.notify)
	if e.relative {
		d.cmd.Dir = e.dir
	}
	d.cmd.Stdout = d.stderr
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		ln.Close()
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.daemons = append(e.daemons, d)
	e.mu.Unlock()
	go func() {
		d.err = d.cmd.Wait()
		ln.Close()
		close(d.done)
	}()
	d.c = api.NewClient(e.socket)
	d.waitNote("READY=1")
	return d
}

// listenNotify listens on the env's NOTIFY_SOCKET path; the channel
// carries the datagrams until the test ends.
func (e *env) listenNotify() <-chan string {
	e.t.Helper()
	ln, notes := e.listenNotifyConn()
	e.t.Cleanup(func() { ln.Close() })
	return notes
}

func (e *env) listenNotifyConn() (*net.UnixConn, chan string) {
	e.t.Helper()
	_ = os.Remove(e.notify)
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: e.notify, Net: "unixgram"})
	if err != nil {
		e.t.Fatal(err)
	}
	notes := make(chan string, 64)
	go func() {
		defer close(notes)
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			select {
			case notes <- string(buf[:n]):
			default:
			}
		}
	}()
	return ln, notes
}

// waitNotify waits for a datagram starting with prefix.
func waitNotify(t *testing.T, notes <-chan string, prefix string) string {
	t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		select {
		case n, ok := <-notes:
			if !ok {
				t.Fatalf("notify socket closed before %s", prefix)
			}
			if strings.HasPrefix(n, prefix) {
				return n
			}
		case <-timer.C:
			t.Fatalf("no %s on NOTIFY_SOCKET within %s", prefix, guard)
		}
	}
}

// command returns a command running bin with the env's environment.
func (e *env) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string(nil), e.environ...)
	return cmd
}

// addBackground registers a background daemon for cleanup.
func (e *env) addBackground(pid int) {
	e.mu.Lock()
	e.bg = append(e.bg, pid)
	e.mu.Unlock()
}

// waitNote waits for a datagram on NOTIFY_SOCKET that starts with prefix.
func (d *daemonProc) waitNote(prefix string) string {
	d.e.t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		select {
		case n, ok := <-d.notes:
			if !ok {
				<-d.done
				d.e.t.Fatalf("vmstated exited (%v) before sending %s; it said:\n%s", d.err, prefix, d.stderr)
			}
			if strings.HasPrefix(n, prefix) {
				return n
			}
		case <-timer.C:
			d.e.t.Fatalf("no %s from vmstated within %s; it said:\n%s", prefix, guard, d.stderr)
		}
	}
}

// term sends SIGTERM and returns the exit code.
func (d *daemonProc) term() int {
	d.e.t.Helper()
	select {
	case <-d.done:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(guard):
			_ = d.cmd.Process.Kill()
			<-d.done
			d.e.t.Errorf("vmstated did not exit within %s of SIGTERM", guard)
		}
	}
	d.c.Close()
	return d.cmd.ProcessState.ExitCode()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return c
}

// get returns a VM's status.
func (d *daemonProc) get(name string) api.Status {
	d.e.t.Helper()
	st, err := d.c.Get(ctx(d.e.t), name)
	if err != nil {
		d.e.t.Fatalf("status of %s: %v", name, err)
	}
	return st
}

// waitUp waits until a VM is up: running, its running hook finished.
func (d *daemonProc) waitUp(name string) api.Status {
	d.e.t.Helper()
	return d.waitStatus(name, "up", func(s api.Status) bool {
		return s.State == api.StateRunning && s.Hook == "" && !s.Recovering
	})
}

// waitStatus waits until cond holds for a VM's status and returns it.
func (d *daemonProc) waitStatus(name, what string, cond func(api.Status) bool) api.Status {
	d.e.t.Helper()
	var st api.Status
	d.waitEvents(name, name+" "+what, func(c context.Context) (bool, string) {
		var err error
		if st, err = d.c.Get(c, name); err != nil {
			d.e.t.Fatalf("status of %s: %v", name, err)
		}
		return cond(st), fmt.Sprintf("it is %s (%s)", st.State, st.Reason)
	})
	return st
}

// waitEvents waits until check holds, looking again at every event of
// vm (every event when vm is ""); a slow tick covers what no event
// announces (restarts leaving the budget window) and a daemon whose event
// stream ended. check says, besides, how things stand, for the failure.
func (d *daemonProc) waitEvents(vm, what string, check func(context.Context) (bool, string)) {
	d.e.t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	news := make(chan struct{}, 1)
	// Subscribed before the first look: a change in between is an event.
	if s, err := d.c.Events(c, api.EventOptions{VM: vm}); err == nil {
		defer s.Close()
		go func() {
			for {
				if _, err := s.Next(); err != nil {
					return
				}
				select {
				case news <- struct{}{}:
				default:
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ok, how := check(c)
		if ok {
			return
		}
		select {
		case <-news:
		case <-tick.C:
		case <-c.Done():
			d.e.t.Fatalf("gave up after %s waiting for %s; %s", guard, what, how)
		}
	}
}

// waitState waits until a VM rests in state.
func (d *daemonProc) waitState(name string, state api.State) api.Status {
	d.e.t.Helper()
	return d.waitStatus(name, "in state "+string(state), func(st api.Status) bool {
		if st.State == api.StateFailed && state != api.StateFailed {
			d.e.t.Fatalf("%s failed while waiting for %s: %s", name, state, st.Reason)
		}
		return st.State == state
	})
}

func (d *daemonProc) do(name string, a api.Action) api.Status {
	d.e.t.Helper()
	st, err := d.c.Do(ctx(d.e.t), name, a, nil)
	if err != nil {
		d.e.t.Fatalf("%s %s: %v", a, name, err)
	}
	return st
}

// eventLog collects one VM's events from the daemon's event stream.
type eventLog struct {
	mu      sync.Mutex
	evs     []api.Event
	changed chan struct{}
	err     error
}

// events subscribes to a VM's events; what happens after it returns is
// seen.
func (d *daemonProc) events(name string) *eventLog {
	d.e.t.Helper()
	c, cancel := context.WithCancel(context.Background())
	s, err := d.c.Events(c, api.EventOptions{VM: name})
	if err != nil {
		cancel()
		d.e.t.Fatalf("events: %v", err)
	}
	l := &eventLog{changed: make(chan struct{})}
	d.e.t.Cleanup(func() { cancel(); s.Close() })
	go func() {
		for {
			ev, err := s.Next()
			l.mu.Lock()
			if err != nil {
				l.err = err
			} else {
				l.evs = append(l.evs, ev)
			}
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return l
}

// path returns the states entered so far, in order.
func (l *eventLog) path() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.evs {
		if ev.Kind == api.KindTransition {
			out = append(out, string(ev.To))
		}
	}
	return out
}

// waitFor waits until the events seen so far satisfy cond.
func (l *eventLog) waitFor(t *testing.T, what string, cond func([]api.Event) bool) []api.Event {
	t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		l.mu.Lock()
		evs := append([]api.Event(nil), l.evs...)
		ch, err := l.changed, l.err
		l.mu.Unlock()
		if cond(evs) {
			return evs
		}
		if err != nil {
			t.Fatalf("event stream ended (%v) before %s; events: %v", err, what, evs)
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("gave up after %s waiting for %s; events: %v", guard, what, evs)
		}
	}
}

// waitEnter waits until the VM has entered state n times.
func (l *eventLog) waitEnter(t *testing.T, state api.State, n int) []api.Event {
	t.Helper()
	return l.waitFor(t, fmt.Sprintf("entering %s %d time(s)", state, n), func(evs []api.Event) bool {
		c := 0
		for _, ev := range evs {
			if ev.Kind == api.KindTransition && ev.To == state {
				c++
			}
		}
		return c >= n
	})
}

// run runs a binary with the env's environment and returns its output and
// exit code.
func (e *env) run(bin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var o, se bytes.Buffer
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(c, bin, args...)
	cmd.Env = e.environ
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return o.String(), se.String(), code
}

// ctl runs vmstatedctl against the env's daemon.
func (e *env) ctl(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.run(ctlBin, append([]string{"-s", e.socket}, args...)...)
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// waitGone waits until pid is no longer a live process.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("process %d to end", pid), func() bool { return !alive(pid) })
}

// vmProcs returns the live processes running in a VM's run directory: its
// hypervisor, whatever its pid.
func (e *env) vmProcs(name string) []int {
	dir := filepath.Join(e.runDir, name)
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && cwd == dir && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// hookProcs returns the live processes whose working directory is in the
// config root: running hooks.
func (e *env) hookProcs() []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && strings.HasPrefix(cwd, e.root+"/") && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// cleanup stops the daemons, then kills every process left behind by this
// test: VM processes (their working directory is their run directory) and
// hooks (their working directory is under the test's directory).
func (e *env) cleanup() {
	e.mu.Lock()
	daemons := append([]*daemonProc(nil), e.daemons...)
	vms := append([]string(nil), e.vms...)
	bg := append([]int(nil), e.bg...)
	e.mu.Unlock()
	for _, d := range daemons {
		d.term()
	}
	for _, pid := range bg {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == vmstatedBin {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(guard)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	own := map[string]bool{}
	for _, vm := range vms {
		own[filepath.Join(e.runDir, vm)] = true
		// A VM left running has a cgroup (as root): end it and remove it.
		if h, err := hypervisor.ReadHandleFile(filepath.Join(e.runDir, vm)); err == nil && h.Cgroup != "" {
			if msg := (process.Group{Cgroup: h.Cgroup}).EndLeftovers(); strings.Contains(msg, "remove") {
				e.t.Errorf("%s: %s", vm, msg)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join(p, "cwd"))
		if err != nil {
			continue
		}
		if own[cwd] || strings.HasPrefix(cwd, e.dir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, vm := range vms {
		if _, err := os.Stat(filepath.Join(e.defaultRunDir, vm)); err == nil {
			e.t.Errorf("%s has a runtime directory in the default place %s despite -R", vm, e.defaultRunDir)
			_ = os.RemoveAll(filepath.Join(e.defaultRunDir, vm))
		}
	}
	races, _ := filepath.Glob(filepath.Join(e.dir, "race.*"))
	for _, r := range races {
		b, _ := os.ReadFile(r)
		e.t.Errorf("race detector report of vmstated:\n%s", b)
	}
	for _, d := range daemons {
		if s := d.stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
			e.t.Errorf("vmstated reported a race or panic:\n%s", s)
		}
	}
	// VMSTATED_E2E_LOGS=1 shows the daemons' output and the VM logs of
	// passing tests too.
	if e.t.Failed() || os.Getenv("VMSTATED_E2E_LOGS") != "" {
		for i, d := range daemons {
			e.t.Logf("vmstated #%d output:\n%s", i, d.stderr)
		}
		for _, vm := range vms {
			b, _ := os.ReadFile(filepath.Join(e.logDir, vm+".log"))
			e.t.Logf("log of %s:\n%s", vm, b)
		}
	}
	_ = os.RemoveAll(e.dir)
}

// readLog returns a VM's log file.
func (e *env) readLog(name string) string {
	b, err := os.ReadFile(filepath.Join(e.logDir, name+".log"))
	if err != nil && !errors.Is(err, io.EOF) {
		e.t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
