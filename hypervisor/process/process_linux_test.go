//go:build linux

package process

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatLinux(t *testing.T) {
	rest := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n"
	tests := []struct {
		name    string
		stat    string
		want    uint64
		state   byte
		wantErr bool
	}{
		{"plain", "12 (sleep)" + rest, 4242, 'S', false},
		{"spaces and parens", "12 (a) b (c) d)" + rest, 4242, 'S', false},
		{"zombie", "12 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 20", 99, 'Z', false},
		{"no paren", "12 sleep S 1", 0, 0, true},
		{"short", "12 (x) S 1 2 3", 0, 0, true},
		{"bad number", "12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x 20", 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, state, err := parseStat(12, []byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if st != tt.want || state != tt.state {
				t.Errorf("got %d %q, want %d %q", st, state, tt.want, tt.state)
			}
		})
	}
}

// threads returns the number of threads of this process.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// A host runs many VMs: while their processes run, neither started nor
// attached ones may hold a goroutine or a thread each, and every exit must
// still be seen, with its status for started ones.
func TestManyProcessesWaitWithoutThreads(t *testing.T) {
	const n = 100
	g0, t0 := runtime.NumGoroutine(), threads(t)
	var started, attached []*Process
	ran := make(chan int, 2*n)
	for i := 0; i < n; i++ {
		p, err := Start(Config{Path: "/bin/sleep", Args: []string{"300"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Signal(syscall.SIGKILL) })
		started = append(started, p)
		a, err := Attach(p.PID(), p.StartTime())
		if err != nil {
			t.Fatal(err)
		}
		attached = append(attached, a)
		p.OnExit(func() { ran <- i })
		a.OnExit(func() { ran <- i })
	}
	// Attached twice: both learn the status.
	twice, err := Attach(started[0].PID(), started[0].StartTime())
	if err != nil {
		t.Fatal(err)
	}
	if g := runtime.NumGoroutine() - g0; g >= n/2 {
		t.Errorf("%d running processes (each also attached) added %d goroutines", n, g)
	}
	if th := threads(t) - t0; th >= n/2 {
		t.Errorf("%d running processes (each also attached) added %d threads", n, th)
	}
	for i, p := range started {
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if s := waitDone(t, p); !s.Known || s.Signal != syscall.SIGKILL {
			t.Errorf("process %d: status %+v, want killed by SIGKILL", i, s)
		}
		s := waitDone(t, attached[i])
		if known := attachedStatusUnknown() == ""; s.Known != known || (known && s.Signal != syscall.SIGKILL) {
			t.Errorf("attached process %d: status %+v, want known=%v", i, s, known)
		}
		if i == 0 {
			if s := waitDone(t, twice); s != waitDone(t, attached[0]) {
				t.Errorf("the second Attach of one process saw %+v, the first %+v", s, waitDone(t, attached[0]))
			}
		}
	}
	for i := 0; i < 2*n; i++ {
		select {
		case <-ran:
		case <-time.After(guard):
			t.Fatalf("only %d of %d OnExit functions ran", i, 2*n)
		}
	}
	// Registered after the exit: runs all the same.
	late := make(chan struct{})
	started[0].OnExit(func() { close(late) })
	select {
	case <-late:
	case <-time.After(guard):
		t.Fatal("OnExit after the exit never ran")
	}
}

// attachedStatusUnknown says why the exit status of an attached process
// cannot be learnt here, "" when it can (the proc connector works).
func attachedStatusUnknown() string {
	if err := codes.watch(os.Getpid()); err != nil {
		return err.Error()
	}
	codes.forget(os.Getpid())
	return ""
}

// A process that is not our child, attached as after a daemon restart:
// its exit status comes from the proc connector, as root.
func TestAttachedExitStatus(t *testing.T) {
	if why := attachedStatusUnknown(); why != "" {
		if os.Geteuid() == 0 {
			t.Fatalf("running as root, yet the proc connector is not available: %s", why)
		}
		t.Skipf("exit statuses of processes that are not our children cannot be learnt here: %s", why)
	}
	tests := []struct {
		name   string
		send   string // written to the process's fifo: the shell command it runs
		code   int
		signal syscall.Signal
	}{
		{"exit code", "exit 7", 7, 0},
		{"exit zero", "exit 0", 0, 0},
		{"signal", "kill -SEGV $$", -1, syscall.SIGSEGV},
		{"exec'd program", "exec /bin/sh -c 'exit 42'", 42, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fifo := filepath.Join(dir, "fifo")
			pidFile := filepath.Join(dir, "pid")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			// The starter exits at once, so the process we attach to
			// is its orphan, not our child.
			starter, err := Start(Config{Path: "/bin/sh", Args: []string{"-c",
				`sh -c 'read cmd < "$0"; eval "$cmd"' ` + fifo + ` </dev/null >/dev/null 2>&1 & echo $! > ` + pidFile}})
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, starter)
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			st, err := StartTimeOf(pid)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Attach(pid, st)
			if err != nil {
				t.Fatal(err)
			}
			if p.child != nil {
				t.Fatal("the attached process is our child")
			}
			if err := os.WriteFile(fifo, []byte(tt.send+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := waitDone(t, p)
			if !s.Known || s.Code != tt.code || s.Signal != tt.signal {
				t.Errorf("status = %+v, want known, code %d, signal %v", s, tt.code, tt.signal)
			}
		})
	}
}

// attachHelperEnv makes the test binary attach to the process named by
// the variable ("PID START"), say "attached", and print how it ended.
const attachHelperEnv = "VMSTATED_PROCESS_TEST_ATTACH"

func TestAttachHelper(t *testing.T) {
	v := os.Getenv(attachHelperEnv)
	if v == "" {
		t.Skip("only run as a helper by TestAttachedExitStatusWithoutRoot")
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscan(v, &pid, &st); err != nil {
		t.Fatal(err)
	}
	p, err := Attach(pid, st)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("attached")
	s := waitDone(t, p)
	fmt.Printf("status known=%v code=%d why=%s\n", s.Known, s.Code, s.Why)
}

// An unprivileged user learns exit statuses through the proc connector on
// Linux 6.6 and later; in a user namespace of its own (a container) the
// kernel does not answer it. Then the exit status of a process that is
// not one's child is unknown, and Why says so.
func TestAttachedExitStatusUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the helper as another user")
	}
	for _, userns := range []bool{false, true} {
		t.Run(fmt.Sprintf("userns=%v", userns), func(t *testing.T) {
			out := runAttachHelper(t, userns)
			t.Logf("the helper said:\n%s", out)
			switch {
			case strings.Contains(out, "status known=true code=7 why=\n"):
				if userns {
					t.Errorf("in a user namespace of its own the helper learnt the status:\n%s", out)
				}
			case strings.Contains(out, "status known=false code=-1 why=proc connector: "):
				if userns && !strings.Contains(out, "namespace") {
					t.Errorf("the helper does not say that its namespace is why:\n%s", out)
				}
			default:
				t.Errorf("unprivileged helper said:\n%s\nwant exit 7, or an unknown status saying why", out)
			}
		})
	}
}

// runAttachHelper runs TestAttachHelper as nobody (in a user namespace of
// its own if userns) against a process that exits 7, and returns what it
// said.
func runAttachHelper(t *testing.T, userns bool) string {
	// The helper binary must be reachable for the unprivileged user.
	dir, err := os.MkdirTemp("", "attach-helper")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "process.test")
	// Copied by cp(1), never open for writing here, where a concurrent
	// fork could make running it fail with "text file busy".
	if out, err := exec.Command("cp", os.Args[0], bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target, err := Start(Config{Path: "/bin/sh", Args: []string{"-c", `read x < "$0"; exit 7`, fifo}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Signal(syscall.SIGKILL) })

	cmd := exec.Command(bin, "-test.run=^TestAttachHelper$", "-test.v")
	cmd.Env = []string{attachHelperEnv + "=" + fmt.Sprint(target.PID(), " ", target.StartTime())}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if userns {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "attached" {
			break
		}
	}
	if err := os.WriteFile(fifo, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, target); s.Code != 7 {
		t.Fatalf("target status %+v, want exit 7", s)
	}
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	_ = cmd.Wait()
	return strings.Join(lines, "\n") + "\n"
}

// A re-adopted process's descriptor can be taken: the write end of a pipe
// only the process holds, here Inherit's descriptor in a gated start.
func TestDupFD(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := Config{Path: "/bin/sleep", Args: []string{"100"}, Gated: true, Inherit: []*os.File{w}}
	p, err := Start(cfg)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var a *Process
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		if a != nil {
			<-a.Done() // and its pidfd closed: the next test counts them
		}
	})
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DupFD(cfg.InheritFD(0)); err == nil {
		t.Error("DupFD of a started process worked; it is for re-adopted ones")
	}
	a, err = Attach(p.PID(), p.StartTime())
	if err != nil {
		t.Fatal(err)
	}
	f, err := a.DupFD(cfg.InheritFD(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("taken\n")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "taken\n" {
		t.Errorf("read %q, %v from the pipe", line, err)
	}
	if _, err := a.DupFD(99); err == nil {
		t.Error("DupFD of a descriptor the process does not have worked")
	}
}

// pidfdsOf returns this process's pidfd descriptors that name pid (their
// fdinfo says so; -1 for a process that has been reaped): other tests'
// processes, reaped at their own pace, do not count.
func pidfdsOf(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || l != "anon_inode:[pidfd]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && strings.Contains(string(info), fmt.Sprintf("\nPid:\t%d\n", pid)) {
			fds = append(fds, e.Name())
		}
	}
	return fds
}

// A started process costs the daemon one descriptor, its pidfd, which
// signals it and reaps it: every fork copies the descriptor table, so a
// thousand VMs with two each made every launch copy a thousand more.
func TestStartedProcessHoldsOnePidfd(t *testing.T) {
	p, err := Start(Config{Path: "/bin/sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	held := pidfdsOf(t, p.PID())
	if len(held) != 1 {
		t.Errorf("a started process holds pidfds %v, want 1", held)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s := waitDone(t, p)
	if !s.Known || s.Signal != syscall.SIGTERM {
		t.Errorf("status %+v, want known, ended by SIGTERM", s)
	}
	// A pidfd left open would now name pid -1.
	for _, fd := range held {
		if slices.Contains(pidfdsOf(t, -1), fd) {
			t.Errorf("pidfd %s left open once the process was reaped", fd)
		}
	}
	// Reaped: the pid is gone, not a zombie.
	if _, err := StartTimeOf(p.PID()); err == nil {
		t.Errorf("pid %d still exists after Done", p.PID())
	}
}

// A gated process started in a cgroup needs no gate: the cgroup names it
// from its first instruction, so it runs its program at once, with no
// /bin/sh before it, and its descriptors are numbered as through the
// gate (3 closed, Inherit from 4).
func TestGatedStartInACgroupRunsAtOnce(t *testing.T) {
	cg := MakeCgroup("gated-test")
	if cg == "" {
		t.Skip("no cgroup v2 hierarchy this process may use (needs root)")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := sh(t, `[ -e /proc/self/fd/3 ] && echo "3 open"; echo ready >&4; exec sleep 100`)
	cfg.Gated, cfg.Cgroup, cfg.Inherit = true, cg, []*os.File{w}
	p, err := Start(cfg)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Group().Signal(syscall.SIGKILL); <-p.Done(); p.Group().EndLeftovers() })
	if p.Group().Cgroup != cg {
		t.Fatalf("process in cgroup %q, want %q", p.Group().Cgroup, cg)
	}
	// Not released: it runs all the same.
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("read %q, %v from descriptor %d of the program", line, err, cfg.InheritFD(0))
	}
	if b, _ := os.ReadFile(cfg.OutputPath); len(b) != 0 {
		t.Errorf("the program saw: %q", b)
	}
	if members, _ := p.Group().Members(); len(members) != 1 || members[0] != p.PID() {
		t.Errorf("cgroup holds %v, want only pid %d", members, p.PID())
	}
	if err := p.Release(); err != nil {
		t.Errorf("Release of a process that had no gate: %v", err)
	}
}

// Where the kernel cannot start the process in its cgroup (before Linux
// 5.7; here a directory that is no cgroup), it starts without one and,
// gated, waits at the gate: nothing runs that its cgroup does not name.
func TestGatedStartWhereTheCgroupFails(t *testing.T) {
	cg := filepath.Join(t.TempDir(), "not-a-cgroup")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := sh(t, "echo ran")
	cfg.Gated, cfg.Cgroup = true, cg
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if g := p.Group().Cgroup; g != "" {
		t.Errorf("process in cgroup %q, want none", g)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("the cgroup that could not be used is still there: %v", err)
	}
	if b, _ := os.ReadFile(cfg.OutputPath); len(b) != 0 {
		t.Fatalf("the program ran before Release: %q", b)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, p); s.Code != 0 {
		t.Fatalf("status %+v", s)
	}
	waitOutput(t, cfg.OutputPath, "ran")
}
