package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// runBackground runs a miniature vmstated that goes to the background and
// returns its exit code and what it printed.
func runBackground(t *testing.T, role, pidfile, output string) (int, string) {
	t.Helper()
	cmd := self(role, pidfileEnv+"="+pidfile, outputEnv+"="+output)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("run %s: %v", role, err)
		return 0, ""
	}
}

// stopDaemon stops the background daemon holding pidfile and returns once it
// has let go of the lock, without polling: a blocking flock on the pidfile
// returns when the holder closes it or dies.
func stopDaemon(t *testing.T, pid int, pidfile string) {
	t.Helper()
	f, err := os.Open(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

func TestBackgroundReady(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "vmstated.pid")
	output := filepath.Join(dir, "vmstated.out")

	code, out := runBackground(t, "bg-ready", pidfile, output)
	if code != 0 || out != "" {
		t.Fatalf("parent exited %d saying %q, want 0 and silence", code, out)
	}

	// The parent exited only after the child locked the pidfile and said
	// ready, so all of this holds now.
	pid := readPidfile(t, pidfile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if pid == os.Getpid() {
		t.Fatalf("pidfile holds the test's own pid")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("daemon %d from the pidfile is not alive: %v", pid, err)
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("daemon %d: getsid %d (%v), want its own pid (setsid)", pid, sid, err)
	}
	p, err := LockPidfile(pidfile)
	if err == nil {
		p.Close()
		t.Fatal("the pidfile is not locked by the background daemon")
	}
	if want := fmt.Sprintf("(pid %d, pidfile %s)", pid, pidfile); !strings.Contains(err.Error(), want) {
		t.Errorf("lock error %q does not name %s", err, want)
	}
	b, err := os.ReadFile(output)
	if err != nil || !strings.Contains(string(b), "child started") {
		t.Errorf("output file holds %q (%v), want the daemon's stderr", b, err)
	}

	stopDaemon(t, pid, pidfile)
	if _, err := os.Stat(pidfile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pidfile after the daemon stopped: %v, want it removed", err)
	}
}

// Notes the daemon sends with its readiness reach the parent's stderr,
// one line each, and the parent still exits 0: the daemon runs.
func TestBackgroundReadyWithNotes(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "vmstated.pid")
	code, out := runBackground(t, "bg-note", pidfile, "")
	pid := readPidfile(t, pidfile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	want := "vmstated: 2 of 3 VM directories have config errors; see the log\nvmstated: second note\n"
	if code != 0 || out != want {
		t.Errorf("parent exited %d saying %q, want 0 and %q", code, out, want)
	}
	stopDaemon(t, pid, pidfile)
}

func TestBackgroundSecondInstance(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "vmstated.pid")
	if code, out := runBackground(t, "bg-ready", pidfile, ""); code != 0 {
		t.Fatalf("first instance exited %d: %s", code, out)
	}
	pid := readPidfile(t, pidfile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	code, out := runBackground(t, "bg-ready", pidfile, "")
	want := fmt.Sprintf("vmstated: vmstated is already running (pid %d, pidfile %s)\n", pid, pidfile)
	if code != 1 || out != want {
		t.Errorf("second instance exited %d saying %q, want 1 and %q", code, out, want)
	}
	stopDaemon(t, pid, pidfile)
}

func TestBackgroundFail(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "vmstated.pid")
	code, out := runBackground(t, "bg-fail", pidfile, "")
	want := "vmstated: config web: line 3: unknown key \"cpu\"\n"
	if code != 1 || out != want {
		t.Errorf("parent exited %d saying %q, want 1 and %q", code, out, want)
	}
}

func TestBackgroundDiesWithoutWord(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "vmstated.pid")
	output := filepath.Join(dir, "vmstated.out")
	for _, tc := range []struct {
		output string
		hint   string
	}{
		{"", "its output was discarded; run with -f to see it"},
		{output, "see " + output},
	} {
		code, out := runBackground(t, "bg-die", pidfile, tc.output)
		re := regexp.MustCompile(`^vmstated: background daemon \(pid \d+\) exited before it was ready \(exit status 7\); ` + regexp.QuoteMeta(tc.hint) + "\n$")
		if code != 1 || !re.MatchString(out) {
			t.Errorf("output %q: parent exited %d saying %q, want 1 and %s", tc.output, code, out, re)
		}
	}
	if b, err := os.ReadFile(output); err != nil || string(b) != "child started\n" {
		t.Errorf("output file holds %q (%v), want the daemon's stderr", b, err)
	}
}

func TestBackgroundKilled(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "vmstated.pid")
	code, out := runBackground(t, "bg-kill", pidfile, "")
	re := regexp.MustCompile(`^vmstated: background daemon \(pid \d+\) exited before it was ready \(signal: killed\); `)
	if code != 1 || !re.MatchString(out) {
		t.Errorf("parent exited %d saying %q, want 1 and %s", code, out, re)
	}
}

// Processes the daemon started before dying keep running; the parent still
// learns of the death because they do not hold the readiness pipe.
func TestBackgroundDiesLeavingProcesses(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "vmstated.pid")
	output := filepath.Join(dir, "vmstated.out")
	code, out := runBackground(t, "bg-spawn-die", pidfile, output)
	b, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`grandchild (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("output file holds %q, want the left-behind process's pid", b)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	defer syscall.Kill(pid, syscall.SIGKILL)
	if !strings.Contains(out, "exited before it was ready (exit status 7)") || code != 1 {
		t.Errorf("parent exited %d saying %q, want 1 and exit status 7", code, out)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("left-behind process %d: %v, want it alive", pid, err)
	}
}

// Background called in this process: the context ends before the daemon
// reports.
func TestBackgroundContextEnds(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "vmstated.pid")
	t.Setenv(roleEnv, "bg-hang")
	t.Setenv(pidfileEnv, pidfile)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	isChild, err := Background(ctx, "")
	if isChild {
		t.Fatal("Background in the test process reported child")
	}
	m := regexp.MustCompile(`^gave up waiting for the background daemon \(pid (\d+)\) to be ready: context canceled; it may still be starting$`).FindStringSubmatch(fmt.Sprint(err))
	if m == nil {
		t.Fatalf("error %v, want gave up waiting", err)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Errorf("kill the background daemon %d: %v", pid, err)
	}
}

func TestChildReadinessOutsideBackground(t *testing.T) {
	r := ChildReadiness()
	if err := r.Ready(); err != nil {
		t.Errorf("Ready in the foreground: %v", err)
	}
	r.Fail(errors.New("ignored"))
}

// A stray marker variable must not make a process write into whatever its
// file descriptor 3 is.
func TestTakeChildPipeRejectsStrayMarker(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "not-a-pipe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct{ name, value string }{
		{"not a number", "x"},
		{"stdio", "2"},
		{"closed", "999"},
		{"regular file", strconv.Itoa(int(f.Fd()))},
		{"read end of a pipe", strconv.Itoa(int(r.Fd()))},
	} {
		t.Setenv(childEnv, tc.value)
		if p := takeChildPipe(); p != nil {
			t.Errorf("%s: marker accepted", tc.name)
		}
		if _, ok := os.LookupEnv(childEnv); ok {
			t.Errorf("%s: marker left in the environment", tc.name)
		}
	}
	// The accepted descriptor is owned by what takeChildPipe returns, so
	// give it a copy.
	fd, err := unix.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, strconv.Itoa(fd))
	p := takeChildPipe()
	if p == nil {
		unix.Close(fd)
		t.Fatal("write end of a pipe: marker rejected")
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("accepted pipe is not close-on-exec (flags %#x, %v)", fl, err)
	}
	if err := p.Ready(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	if got := string(buf[:n]); got != msgReady {
		t.Errorf("pipe got %q, want %q", got, msgReady)
	}
}

// BenchmarkBackgroundReady measures a background start: re-exec, readiness
// report, parent exit; then stops the daemon.
func BenchmarkBackgroundReady(b *testing.B) {
	pidfile := filepath.Join(b.TempDir(), "vmstated.pid")
	for b.Loop() {
		cmd := self("bg-ready", pidfileEnv+"="+pidfile)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		b.StopTimer()
		raw, err := os.ReadFile(pidfile)
		if err != nil {
			b.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(pidfile)
		if err != nil {
			b.Fatal(err)
		}
		syscall.Kill(pid, syscall.SIGTERM)
		unix.Flock(int(f.Fd()), unix.LOCK_EX)
		f.Close()
		b.StartTimer()
	}
}
