package process

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// withPipeGate runs f with tracing taken for refused, so that gated
// starts use the pipe gate, as on a host that refuses tracing.
func withPipeGate(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	was := traceRefused.Load()
	traceRefused.Store(true)
	defer traceRefused.Store(was)
	f(t)
}

// procStatus reads a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in the status of pid %d", field, pid)
	return ""
}

// A gated process is held at its exec, traced by the daemon, before the
// program's first instruction; released, it runs the program in the same
// process with descriptor 3 closed and the inherited ones from 4 on, as
// behind the pipe gate.
func TestTraceGateHoldsAtExec(t *testing.T) {
	if traceRefused.Load() {
		t.Skip("this host refuses tracing; gates are pipe gates")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := sh(t, `[ -e /proc/$$/fd/3 ] && echo fd3-open; echo "fd4 $(readlink /proc/$$/fd/4)"; echo ran; exit 7`)
	cfg.Gated, cfg.Inherit = true, []*os.File{w}
	p, err := Start(cfg)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tracer := procStatus(t, p.PID(), "TracerPid"); tracer == "0" {
		t.Errorf("the gated process is not traced (TracerPid %s): a pipe gate was used", tracer)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if s := waitDone(t, p); s.Code != 7 {
		t.Fatalf("status %+v, want the program's 7", s)
	}
	waitOutput(t, cfg.OutputPath, "ran")
	out, err := os.ReadFile(cfg.OutputPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "fd3-open") {
		t.Errorf("descriptor 3 is open in the program:\n%s", out)
	}
	if cfg.InheritFD(0) != 4 || !strings.Contains(string(out), "fd4 pipe:") {
		t.Errorf("the inherited pipe is not descriptor 4 (InheritFD %d) in the program:\n%s", cfg.InheritFD(0), out)
	}
}

// Every gated test holds with the pipe gate too.
func TestPipeGate(t *testing.T) {
	withPipeGate(t, func(t *testing.T) {
		t.Run("waits", TestGatedStartWaitsForRelease)
		t.Run("dropped", TestGatedStartWithoutReleaseRunsNothing)
		t.Run("missing", TestGatedStartOfAMissingProgram)
		t.Run("dies", TestGatedProcessEndsWithItsStarter)
	})
}

// gateHelperEnv makes the test binary start a gated process that would
// write the file the variable names, print its pid, and exit without
// releasing it, as a daemon killed between a start and its record does.
const gateHelperEnv = "VMSTATED_PROCESS_TEST_GATE"

func TestGateHelper(t *testing.T) {
	path := os.Getenv(gateHelperEnv)
	if path == "" {
		t.Skip("only run as a helper by TestGatedProcessEndsWithItsStarter")
	}
	if os.Getenv(gateHelperEnv+"_PIPE") != "" {
		traceRefused.Store(true)
	}
	p, err := Start(Config{Path: "/bin/sh", Args: []string{"-c", `echo ran > "$0"`, path}, Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("pid", p.PID())
	os.Exit(0)
}

// A gated process whose starter dies before releasing it ends without
// running its program.
func TestGatedProcessEndsWithItsStarter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ran")
	cmd := exec.Command(os.Args[0], "-test.run=^TestGateHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), gateHelperEnv+"="+path)
	if traceRefused.Load() {
		cmd.Env = append(cmd.Env, gateHelperEnv+"_PIPE=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pid "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if err := cmd.Wait(); err != nil || pid == 0 {
		t.Fatalf("helper: %v, pid %d", err, pid)
	}
	// Its end: a pidfd of it becomes readable (a pid already gone is
	// ended too).
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(guard/time.Millisecond))
		unix.Close(fd)
		if n == 0 || err != nil {
			t.Fatalf("the gated process %d still runs after its starter died (poll: %d, %v)", pid, n, err)
		}
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("the program ran although its gate was never opened")
	}
}

// A program that exits at once after its release is released, not taken
// for a process that ended before it ran: the release's answer once raced
// the exit (about one start in a hundred of /bin/true, eight at a time).
func TestGatedProgramThatExitsAtOnce(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				p, err := Start(Config{Path: "/bin/true", Gated: true})
				if err != nil {
					errs <- err
					return
				}
				if err := p.Release(); err != nil {
					errs <- fmt.Errorf("release: %w", err)
				}
				<-p.Done()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A signal that reaches a gated process before its release is delivered
// once it is released, as to a process that was never held: SIGTERM ends
// it by SIGTERM, neither swallowed by the gate nor turned into its SIGTRAP.
func TestSignalToAGatedProcessIsPassedOn(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipe=%v", pipe), func(t *testing.T) {
			run := func(t *testing.T) {
				cfg := sh(t, "exec /bin/sleep 60")
				cfg.Gated = true
				p, err := Start(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				_ = p.Release() // the process may be gone by the answer
				if s := waitDone(t, p); s.Signal != syscall.SIGTERM && s.Code != 125 {
					t.Errorf("status %+v, want ended by SIGTERM (or, behind a pipe gate, its shell's 125)", s)
				}
			}
			if pipe {
				withPipeGate(t, run)
			} else {
				run(t)
			}
		})
	}
}
