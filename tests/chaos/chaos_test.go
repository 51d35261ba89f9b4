// Package chaos kills the daemon with SIGKILL at random points while VMs
// start, stop and restart, and checks after every restart that nothing was
// lost: no VM missing, no hypervisor process orphaned or doubled, every VM
// where its user left it, every state record readable, and in the end
// every teardown hook run exactly once for every setup hook that ran. As
// root, the state directory is a tmpfs of its own that turns read-only at
// random moments, so record writes fail and must be retried.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

var daemonBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmstated-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "vmstated")
	args := []string{"build", "-o", daemonBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../../cmd/vmstated")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vmstated:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// guard bounds every wait; it catches deadlocks, it measures nothing.
const guard = 60 * time.Second

type rig struct {
	t       *testing.T
	base    string
	socket  string
	record  string
	marker  string // the VM processes' argument, to find them all
	daemon  *exec.Cmd
	exited  chan struct{}
	client  *api.Client
	vms     []string
	restart int
	// faulty is set when the state directory is a tmpfs the rig can turn
	// read-only.
	faulty bool
}

func (r *rig) stateDir() string { return filepath.Join(r.base, "state") }

// mountState puts the state directory on a tmpfs of its own (root only).
func (r *rig) mountState() bool {
	if os.Geteuid() != 0 {
		return false
	}
	if err := os.MkdirAll(r.stateDir(), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", r.stateDir(), "tmpfs", 0, "size=4m,mode=0755"); err != nil {
		r.t.Logf("no write faults: cannot mount a tmpfs: %v", err)
		return false
	}
	r.faulty = true
	return true
}

// readOnly turns record writes into failures, or back.
func (r *rig) readOnly(on bool) {
	flags := uintptr(unix.MS_REMOUNT)
	if on {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("tmpfs", r.stateDir(), "tmpfs", flags, "size=4m,mode=0755"); err != nil {
		r.t.Fatalf("remount: %v", err)
	}
}

const hook = `#!/bin/sh
sleep 0.02
echo "$1 $2" >> %q
`

func newRig(t *testing.T, vms []string, seed int64) *rig {
	base := t.TempDir()
	r := &rig{t: t, base: base, socket: filepath.Join(base, "s.sock"), record: filepath.Join(base, "record"),
		marker: strconv.Itoa(800000 + int(seed%100000)), vms: vms}
	for _, vm := range vms {
		dir := filepath.Join(base, "etc", vm)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("%s { hypervisor = exec; stop_timeout = 5; hook_timeout = 20;\n exec { command = [ \"/bin/sleep\", %q ]; } }\n", vm, r.marker)
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"start_network", "start_storage", "stop_storage", "stop_network"} {
			if err := os.WriteFile(filepath.Join(dir, h), []byte(fmt.Sprintf(hook, r.record)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(r.cleanup)
	if r.mountState() {
		t.Cleanup(func() { _ = unix.Unmount(r.stateDir(), unix.MNT_DETACH) })
	}
	r.start()
	return r
}

func (r *rig) start() {
	r.t.Helper()
	cmd := exec.Command(daemonBin, "-f", "-c", filepath.Join(r.base, "etc"), "-s", r.socket,
		"-p", filepath.Join(r.base, "pid"), "-l", filepath.Join(r.base, "log"), "-S", filepath.Join(r.base, "state"), "-R", filepath.Join(r.base, "run"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.base, "XDG_RUNTIME_DIR=" + filepath.Join(r.base, "xdg")}
	logf, err := os.OpenFile(filepath.Join(r.base, "daemon.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	logf.Close()
	r.daemon = cmd
	r.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, r.exited)
	r.client = api.NewClient(r.socket)
	deadline := time.Now().Add(guard)
	for {
		if list, err := r.client.List(context.Background()); err == nil && len(list) == len(r.vms) {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(r.base, "daemon.out"))
			r.t.Fatalf("daemon not ready:\n%s\nholders of the pidfile: %s\nholders of the control socket: %s",
				tail(string(out), 5), holders(filepath.Join(r.base, "pid")), socketHolders(r.socket))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends the daemon with SIGKILL: no cleanup of any kind runs.
func (r *rig) kill() {
	_ = r.daemon.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.client.Close()
}

func (r *rig) cleanup() {
	if r.daemon != nil {
		select {
		case <-r.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			for _, vm := range r.vms {
				_, _ = r.client.Do(ctx, vm, api.ActionStop, &api.StopOptions{Force: true})
			}
			cancel()
			_ = r.daemon.Process.Signal(syscall.SIGTERM)
			<-r.exited
		}
	}
	for _, pid := range r.vmProcesses() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// As root the VMs have cgroups: whatever a daemon left, emptied and
	// removed.
	for _, vm := range r.vms {
		if h, err := hypervisor.ReadHandleFile(filepath.Join(r.base, "run", vm)); err == nil && h.Cgroup != "" {
			if msg := (process.Group{Cgroup: h.Cgroup}).EndLeftovers(); strings.Contains(msg, "remove") {
				r.t.Errorf("%s: %s", vm, msg)
			}
		}
	}
}

// vmProcesses lists the live (not zombie) processes of this rig's VMs.
func (r *rig) vmProcesses() []int {
	var out []int
	for _, pids := range r.processesByVM() {
		out = append(out, pids...)
	}
	return out
}

// processesByVM lists the live processes of each VM, found by the marker
// in their command line and told apart by their working directory (the
// VM's run directory); "" holds those of no VM's directory.
func (r *rig) processesByVM() map[string][]int {
	out := map[string][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "sleep\x00"+r.marker) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		vm := ""
		if filepath.Dir(cwd) == filepath.Join(r.base, "run") {
			vm = filepath.Base(cwd)
		}
		out[vm] = append(out[vm], pid)
	}
	return out
}

// saved waits until no VM's status shows an unsaved record.
func (r *rig) saved() {
	r.t.Helper()
	deadline := time.Now().Add(guard)
	for {
		list, err := r.client.List(context.Background())
		ok := err == nil
		for _, st := range list {
			if st.RecordError != "" {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("records still unsaved: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until every VM rests in a steady state.
func (r *rig) settle() []api.Status {
	r.t.Helper()
	deadline := time.Now().Add(guard)
	for {
		list, err := r.client.List(context.Background())
		steady := err == nil && len(list) == len(r.vms)
		for _, st := range list {
			if !st.State.Steady() || (st.State == api.StateRunning && st.PID == 0) {
				steady = false
			}
		}
		if steady {
			return list
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("VMs did not settle: %+v %v", list, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check verifies the invariants that must hold whenever the VMs rest.
func (r *rig) check(list []api.Status) (orphans int) {
	r.t.Helper()
	claimed := map[int]string{}
	for _, st := range list {
		if st.State == api.StateRunning {
			claimed[st.PID] = st.Name
		}
		if st.State == api.StateFailed && !strings.Contains(st.Reason, "state not saved") {
			r.t.Errorf("%s failed: %s", st.Name, st.Reason)
		}
	}
	for _, pid := range r.vmProcesses() {
		if _, ok := claimed[pid]; !ok {
			orphans++
			r.t.Errorf("orphan: VM process %d is claimed by no VM (%+v)", pid, list)
			for _, st := range list {
				b, _ := os.ReadFile(filepath.Join(r.base, "log", st.Name+".log"))
				r.t.Logf("log of %s:\n%s", st.Name, tail(string(b), 40))
			}
		}
	}
	for pid, name := range claimed {
		if syscall.Kill(pid, 0) != nil {
			r.t.Errorf("%s claims pid %d, which does not run", name, pid)
		}
	}
	files, _ := filepath.Glob(filepath.Join(r.base, "state", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		var v map[string]any
		if err != nil || json.Unmarshal(b, &v) != nil {
			r.t.Errorf("state record %s does not parse: %v\n%s", f, err, b)
		}
	}
	return orphans
}

// holders names the processes that have path open.
func holders(path string) string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); l == path {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	return strings.Join(out, "; ")
}

// socketHolders lists the processes holding the unix socket bound at
// path (found by its inode in /proc/net/unix).
func socketHolders(path string) string {
	b, _ := os.ReadFile("/proc/net/unix")
	var links []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path {
			links = append(links, "socket:["+f[6]+"]")
		}
	}
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name()))
			for _, want := range links {
				if l == want {
					cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
					out = append(out, e.Name()+" fd "+fd.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
				}
			}
		}
	}
	return strings.Join(out, "; ")
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeFailures counts the record writes the daemons reported failed: a
// daemon logs a VM's record it could not write once, and again only when
// the error changes, so this counts failed writes per VM and fault, not
// every retry.
func (r *rig) writeFailures() int {
	b, _ := os.ReadFile(filepath.Join(r.base, "daemon.out"))
	return strings.Count(string(b), ": state not saved: ")
}

// hookCounts counts the finished runs of each hook per VM.
func (r *rig) hookCounts() map[string]int {
	b, _ := os.ReadFile(r.record)
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out
}

func TestChaosKillDaemonAtRandomPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped with -short")
	}
	seed := int64(20261122)
	if s := os.Getenv("VMSTATED_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	cycles := 200
	if s := os.Getenv("VMSTATED_CHAOS_CYCLES"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d (set VMSTATED_CHAOS_SEED to replay), %d cycles", seed, cycles)
	r := newRig(t, []string{"vm0", "vm1", "vm2"}, seed)
	kills, orphans, done, faults, refused, doubles, lost := 0, 0, 0, 0, 0, 0, 0
	// want is where each VM's user last asked it to be.
	want := map[string]api.State{}
	for i := 0; i < cycles && !t.Failed(); i++ {
		done++
		list := r.settle()
		for _, st := range list {
			if st.State == api.StateFailed && strings.Contains(st.Reason, "state not saved") {
				// A start refused because its intent could not be
				// recorded: the user is told, and resets it.
				refused++
				ctx, cancel := context.WithTimeout(context.Background(), guard)
				if _, err := r.client.Do(ctx, st.Name, api.ActionFailReset, nil); err != nil {
					t.Fatalf("failreset %s: %v", st.Name, err)
				}
				cancel()
				want[st.Name] = api.StateStopped
			}
		}
		list = r.settle()
		st := list[rng.Intn(len(list))]
		var action api.Action
		switch {
		case st.State == api.StateStopped:
			action = api.ActionStart
		case rng.Intn(3) == 0:
			action = api.ActionRestart
		default:
			action = api.ActionStop
		}
		// A write fault: the state directory turns read-only for a
		// while, around the action.
		var faultOver chan struct{}
		if r.faulty && rng.Intn(3) == 0 {
			faults++
			r.readOnly(true)
			faultOver = make(chan struct{})
			span := time.Duration(rng.Intn(150)) * time.Millisecond
			time.AfterFunc(span, func() { r.readOnly(false); close(faultOver) })
		}
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		_, err := r.client.Do(ctx, st.Name, action, nil)
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: %s %s: %v", i, action, st.Name, err)
		}
		if action == api.ActionStop {
			want[st.Name] = api.StateStopped
		} else {
			want[st.Name] = api.StateRunning
		}
		kill := rng.Intn(2) == 0
		if kill {
			// Somewhere in the middle of the transition: during a hook,
			// between a hook and its record, during the launch...
			time.Sleep(time.Duration(rng.Intn(120)) * time.Millisecond)
		}
		if faultOver != nil {
			// A daemon killed while its records cannot be written
			// takes what it knew with it, and nothing can help that;
			// what must hold is that the records catch up once the
			// disk takes them again.
			<-faultOver
			r.saved()
		}
		if kill {
			r.kill()
			kills++
			r.start()
		}
		list = r.settle()
		orphans += r.check(list)
		for vm, pids := range r.processesByVM() {
			if vm != "" && len(pids) > 1 {
				doubles++
				t.Errorf("cycle %d: %s runs %d processes: %v", i, vm, len(pids), pids)
			}
		}
		for _, st := range list {
			w, asked := want[st.Name]
			if !asked || st.State == w || (st.State == api.StateFailed && strings.Contains(st.Reason, "state not saved")) {
				continue
			}
			lost++
			t.Errorf("cycle %d: %s is %s, its user last asked for %s (%s)", i, st.Name, st.State, w, st.Reason)
		}
	}
	// Stop everything and count the hooks.
	for _, vm := range r.vms {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		_, _ = r.client.Do(ctx, vm, api.ActionStop, nil)
		cancel()
	}
	orphans += r.check(r.settle())
	counts := r.hookCounts()
	dup := 0
	for _, vm := range r.vms {
		for _, pair := range [][2]string{{"start_network", "stop_network"}, {"start_storage", "stop_storage"}} {
			up, down := counts[vm+" "+pair[0]], counts[vm+" "+pair[1]]
			if up != down {
				dup++
				t.Errorf("%s: %s ran %d times, %s %d times", vm, pair[0], up, pair[1], down)
				b, _ := os.ReadFile(filepath.Join(r.base, "log", vm+".log"))
				t.Logf("log of %s:\n%s", vm, b)
			}
		}
	}
	failed := r.writeFailures()
	if faults > 0 && failed == 0 {
		// The faults must reach the records, or the run proves nothing
		// about them.
		t.Errorf("%d write faults injected, but no daemon reported a record it could not write", faults)
	}
	t.Logf("cycles %d, daemon kills %d, write faults injected %d (record writes the daemons reported failed %d, starts refused for an unsaved record %d), orphans found %d, double launches %d, VMs not where their user left them %d, unbalanced setup/teardown hook pairs %d, hook runs %v",
		done, kills, faults, failed, refused, orphans, doubles, lost, dup, counts)
}
