package process

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
)

// guard bounds waits that should end; it only catches deadlocks.
const guard = 60 * time.Second

func waitDone(t *testing.T, p *Process) Status {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(guard):
		t.Fatalf("pid %d did not exit", p.PID())
	}
	s, ok := p.Status()
	if !ok {
		t.Fatal("Status not final after Done")
	}
	return s
}

// waitOutput waits until the file at path contains want.
func waitOutput(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never contained %q (has %q)", path, want, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sh(t *testing.T, script string) Config {
	t.Helper()
	return Config{Path: "/bin/sh", Args: []string{"-c", script}, OutputPath: filepath.Join(t.TempDir(), "out.log")}
}

func TestStartExitStatus(t *testing.T) {
	tests := []struct {
		name   string
		script string
		sig    syscall.Signal // sent once the script printed "ready", 0 for none
		want   Status
	}{
		{"exit 0", "exit 0", 0, Status{Code: 0, Known: true}},
		{"exit 3", "exit 3", 0, Status{Code: 3, Known: true}},
		{"killed", "echo ready; while :; do sleep 1; done", syscall.SIGKILL, Status{Code: -1, Signal: syscall.SIGKILL, Known: true}},
		{"terminated", "echo ready; while :; do sleep 1; done", syscall.SIGTERM, Status{Code: -1, Signal: syscall.SIGTERM, Known: true}},
		{"trapped term", "trap 'exit 7' TERM; echo ready; while :; do sleep 1 & wait $!; done", syscall.SIGTERM, Status{Code: 7, Known: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sh(t, tt.script)
			p, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.StartTime() == 0 {
				t.Error("StartTime is 0")
			}
			if tt.sig != 0 {
				waitOutput(t, cfg.OutputPath, "ready\n")
				if err := p.Signal(tt.sig); err != nil {
					t.Fatal(err)
				}
			}
			if got := waitDone(t, p); got != tt.want {
				t.Errorf("status = %+v, want %+v", got, tt.want)
			}
			if err := p.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("Signal after exit: %v", err)
			}
		})
	}
}

func TestStartEnvDirOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.log")
	if err := os.WriteFile(out, []byte("earlier\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMSTATED_TEST_LEAK", "1")
	p, err := Start(Config{
		Path: "/bin/sh",
		Args: []string{"-c", `pwd; echo "leak=$VMSTATED_TEST_LEAK"; echo err >&2; read x; echo "stdin=$?"; ps -o sid= -p $$ | tr -d ' '`},
		Dir:  dir, OutputPath: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	b, _ := os.ReadFile(out)
	got := string(b)
	for _, want := range []string{"earlier\n", dir + "\n", "leak=\n", "err\n", "stdin=1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	// New session: its session id is its own pid.
	if _, err := os.Stat("/bin/ps"); err == nil && !strings.Contains(got, "\n"+strconv.Itoa(p.PID())+"\n") {
		t.Errorf("output %q: session id is not the pid %d", got, p.PID())
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Config{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty Path: err = %v, want ErrInvalid", err)
	}
	if _, err := Start(Config{Path: "/nonexistent/program"}); err == nil {
		t.Error("missing program: no error")
	}
	if _, err := Start(Config{Path: "/bin/true", OutputPath: "/nonexistent/dir/out.log"}); err == nil {
		t.Error("unwritable output: no error")
	}
}

// TestAttachNonChild re-adopts a process whose parent is not this test: a
// shell starts it in the background and exits, so init inherits it.
func TestAttachNonChild(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	starter, err := Start(Config{Path: "/bin/sh", Args: []string{"-c",
		`sleep 300 </dev/null >/dev/null 2>&1 & echo $! > ` + pidFile}})
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
	st, err := StartTimeOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	if _, err := Attach(pid, st+1); !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Attach with wrong start time: err = %v, want ErrGone", err)
	}
	p, err := Attach(pid, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Status(); ok {
		t.Fatal("attached process reports exit while running")
	}
	// Many waiters.
	waiters := make(chan struct{})
	for i := 0; i < 20; i++ {
		go func() { <-p.Done(); waiters <- struct{}{} }()
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s := waitDone(t, p)
	if why := attachedStatusUnknown(); why != "" {
		if s.Known || s.Code != -1 || s.Why == "" {
			t.Errorf("attached status = %+v, want unknown (%s) and why", s, why)
		}
	} else if !s.Known || s.Signal != syscall.SIGTERM {
		t.Errorf("attached status = %+v, want killed by SIGTERM", s)
	}
	for i := 0; i < 20; i++ {
		<-waiters
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after exit: %v", err)
	}
}

func TestAttachChildSeesExit(t *testing.T) {
	c, err := Start(sh(t, "while :; do sleep 1; done"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attach(c.PID(), c.StartTime())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, c); s.Signal != syscall.SIGKILL {
		t.Errorf("child status %+v", s)
	}
	waitDone(t, a)
	if _, err := Attach(c.PID(), c.StartTime()); !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Attach to exited pid: err = %v, want ErrGone", err)
	}
	if _, err := StartTimeOf(c.PID()); !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("StartTimeOf exited pid: err = %v, want ErrGone", err)
	}
	if _, err := Attach(0, 1); !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Attach(0): err = %v, want ErrGone", err)
	}
}

func TestSignalGroup(t *testing.T) {
	dir := t.TempDir()
	childPid := filepath.Join(dir, "child")
	cfg := sh(t, `sleep 300 & echo $! > `+childPid+`; echo ready; wait`)
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, cfg.OutputPath, "ready\n")
	b, err := os.ReadFile(childPid)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := StartTimeOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Watch the grandchild, which is not our child.
	child, err := Attach(pid, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Signal(syscall.SIGKILL) })
	if err := p.Group().Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, p); s.Signal != syscall.SIGKILL {
		t.Errorf("leader status %+v", s)
	}
	waitDone(t, child) // ended with its group
	if err := p.Group().Signal(syscall.SIGKILL); err != nil {
		t.Errorf("signalling the group after its exit: %v", err)
	}
}

func TestGatedStartWaitsForRelease(t *testing.T) {
	cfg := sh(t, "echo ran; exit 7")
	cfg.Gated = true
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := p.StartTime()
	// Held back: nothing ran yet, and the pid is already known.
	time.Sleep(50 * time.Millisecond)
	if b, _ := os.ReadFile(cfg.OutputPath); len(b) != 0 {
		t.Fatalf("the program ran before Release: %q", b)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, p); s.Code != 7 {
		t.Fatalf("status %+v", s)
	}
	waitOutput(t, cfg.OutputPath, "ran")
	if p.StartTime() != start {
		t.Fatal("start time changed across the exec")
	}
}

func TestGatedStartWithoutReleaseRunsNothing(t *testing.T) {
	cfg := sh(t, "echo ran")
	cfg.Gated = true
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The caller going away closes the pipe, as dropping the gate does.
	p.gate.Close()
	if s := waitDone(t, p); s.Code != 125 {
		t.Fatalf("status %+v, want 125", s)
	}
	if b, _ := os.ReadFile(cfg.OutputPath); len(b) != 0 {
		t.Fatalf("the program ran: %q", b)
	}
}

func TestGatedStartOfAMissingProgram(t *testing.T) {
	if _, err := Start(Config{Path: "/nonexistent/vmm", Gated: true}); err == nil {
		t.Fatal("a missing program started")
	}
}
