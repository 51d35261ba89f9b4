package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as the daemon: with roleEnv set, TestMain runs the
// named role instead of the tests, so the tests drive real processes.
const (
	roleEnv    = "VMSTATED_DAEMON_TEST_ROLE"
	pidfileEnv = "VMSTATED_DAEMON_TEST_PIDFILE"
	outputEnv  = "VMSTATED_DAEMON_TEST_OUTPUT"
	spawnEnv   = "VMSTATED_DAEMON_TEST_SPAWN"
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(roleEnv); role {
	case "":
		os.Exit(m.Run())
	case "lock":
		os.Exit(roleLock())
	case "block":
		waitTerm()
		os.Exit(0)
	case "bg-ready", "bg-note", "bg-fail", "bg-die", "bg-kill", "bg-spawn-die", "bg-hang":
		os.Exit(roleBackground(role))
	default:
		fmt.Fprintf(os.Stderr, "unknown test role %q\n", role)
		os.Exit(99)
	}
}

func waitTerm() {
	<-termSignal()
}

// termSignal catches SIGTERM from now on.
func termSignal() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	return ch
}

// roleLock takes the pidfile, says "locked" on stdout (and, when asked, the
// pid of a long-lived process it started), and holds the lock until stdin
// closes.
func roleLock() int {
	p, err := LockPidfile(os.Getenv(pidfileEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, ErrRunning) {
			return 3
		}
		return 4
	}
	fmt.Println("locked")
	if os.Getenv(spawnEnv) != "" {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), roleEnv+"=block")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 5
		}
		fmt.Println("grandchild", cmd.Process.Pid)
	}
	io.Copy(io.Discard, os.Stdin)
	if err := p.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 6
	}
	return 0
}

// roleBackground is a miniature vmstated main: background, then behave as
// the role says.
func roleBackground(role string) int {
	isChild, err := Background(context.Background(), os.Getenv(outputEnv))
	if !isChild {
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmstated:", err)
			return 1
		}
		return 0
	}
	ready := ChildReadiness()
	fmt.Fprintln(os.Stderr, "child started")
	switch role {
	case "bg-fail":
		ready.Fail(errors.New(`config web: line 3: unknown key "cpu"`))
		return 1
	case "bg-die":
		return 7
	case "bg-kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "bg-spawn-die":
		// Leave a process behind, as a daemon leaves VMs: it must not
		// keep the parent waiting on the readiness pipe.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), roleEnv+"=block")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "grandchild", cmd.Process.Pid)
		return 7
	}
	p, err := LockPidfile(os.Getenv(pidfileEnv))
	if err != nil {
		ready.Fail(err)
		return 1
	}
	defer p.Close()
	// Like a real daemon, catch signals before saying ready: whoever
	// started us may signal us as soon as we have.
	term := termSignal()
	if role == "bg-note" {
		ready.Note("2 of 3 VM directories have config errors;\nsee the log")
		ready.Note("")
		ready.Note("second note")
	}
	if role == "bg-ready" || role == "bg-note" {
		if err := ready.Ready(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	<-term
	return 0
}

// self returns a command running this test binary in role.
func self(role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	// Race-enabled binaries sleep a second at exit by default; the roles
	// have nothing more to report by then.
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// holder is a process holding a pidfile lock.
type holder struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	out        *bufio.Reader
	grandchild int
}

// startHolder starts a process that locks path and returns once it has.
func startHolder(t *testing.T, path string, spawn bool) *holder {
	t.Helper()
	env := []string{pidfileEnv + "=" + path}
	if spawn {
		env = append(env, spawnEnv+"=1")
	}
	cmd := self("lock", env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
		if h.grandchild > 0 {
			syscall.Kill(h.grandchild, syscall.SIGKILL)
		}
	})
	if line := h.line(t); line != "locked" {
		t.Fatalf("holder said %q, want locked", line)
	}
	if spawn {
		line := h.line(t)
		pid, err := strconv.Atoi(strings.TrimPrefix(line, "grandchild "))
		if err != nil {
			t.Fatalf("holder said %q, want grandchild <pid>", line)
		}
		h.grandchild = pid
	}
	return h
}

func (h *holder) line(t *testing.T) string {
	t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read from holder: %v (got %q)", err, s)
	}
	return strings.TrimSpace(s)
}

// shortDir is a temporary directory with a path short enough for a unix
// socket name (t.TempDir paths can exceed the 104-108 byte limit).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
