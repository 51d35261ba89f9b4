package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/trust"
)

// Request describes one hook run.
type Request struct {
	// Env names the VM and the state; Env.Name and Env.State are required.
	// Env.ConfigDir is the hook's working directory (ScriptPath when it is
	// empty).
	Env Env
	// ScriptPath is the directory holding the hooks; empty means
	// Env.ConfigDir. It must be absolute.
	ScriptPath string
	// Timeout bounds the run; zero or less means DefaultTimeout.
	Timeout time.Duration
	// Grace is the time between SIGTERM and SIGKILL on timeout or
	// cancellation; zero or less means DefaultGrace.
	Grace time.Duration
	// Output receives the hook's output, one line per Write call:
	// "[hook <state>] <line>\n" for stdout and
	// "[hook <state> stderr] <line>\n" for stderr. The writer is the VM's
	// log, which adds the time. Run never writes to it after returning.
	// Nil discards the output.
	Output io.Writer
	// Strict selects the owner and permission checks; the zero value
	// checks when the daemon runs as root.
	Strict Strictness
	// StatusFile, when set, makes the hook's outcome outlive the caller:
	// the hook runs under a small /bin/sh wrapper that writes its exit
	// status to StatusFile when it exits. The hook runs in its own process
	// group, so it is not killed when the daemon dies; a daemon started
	// afterwards learns from the file whether the hook completed and how
	// (ReadStatus), instead of running it a second time.
	StatusFile string
	// Started, when set, is called with the hook's process id (the
	// wrapper's, with StatusFile) once it has started, before Run waits.
	Started func(pid int)
}

// shell runs the status wrapper.
const shell = "/bin/sh"

// statusShim waits for the word on fd 3 (sent once the caller has noted
// the wrapper's pid: a caller that dies first closes the pipe and the hook
// never runs, so a later daemon knows to run it), then runs "$@" and
// records its exit status in the file named by its first argument. A hook
// killed by signal N is recorded, like sh reports it, as 128+N.
const statusShim = `f=$1; shift; read -r go <&3 || exit 125; exec 3<&-; "$@"; s=$?; printf '%s\n' "$s" > "$f"; exit "$s"`

// ReadStatus reads a status file written for a hook run with
// Request.StatusFile. ok is false when there is none (the hook has not
// finished, or never ran) or it is incomplete.
func ReadStatus(path string) (code int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		return 0, false
	}
	code, err = strconv.Atoi(strings.TrimSpace(string(b)))
	return code, err == nil
}

// Result is what happened to one hook run.
type Result struct {
	// Hook is the hook's name: the state it belongs to.
	Hook string
	// Path is the hook file that was (or would have been) run; empty when
	// the request was invalid or the script directory is unusable.
	Path string
	// Skipped is true when there is no hook for the state. A skipped hook
	// counts as success.
	Skipped bool
	// ExitCode is the hook's exit status, or -1 when it did not exit
	// normally (killed by a signal, never started).
	ExitCode int
	// Signal names the signal that ended the hook ("SIGKILL"), if any.
	Signal string
	// Duration is how long the hook ran, from start to exit.
	Duration time.Duration
	// TimedOut is true when the hook ran past its timeout.
	TimedOut bool
	// Canceled is true when the caller's context ended first.
	Canceled bool
	// Timeout is the limit that applied to the run.
	Timeout time.Duration
	// Stopped names the strongest signal Run sent to the hook's process
	// group on timeout or cancellation: "SIGTERM", "SIGKILL" or "".
	Stopped string
	// Err is nil when the hook succeeded or was skipped. Otherwise it wraps
	// one of the package's sentinel errors and its text is Reason().
	Err error
}

// OK reports whether the step succeeded: the hook exited 0 or there was
// no hook.
func (r Result) OK() bool { return r.Err == nil }

// Reason is a one-line summary fit for a status display, such as
// "hook start_storage exited with status 3".
func (r Result) Reason() string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.Skipped:
		return fmt.Sprintf("hook %s not present, skipped", r.Hook)
	default:
		return fmt.Sprintf("hook %s succeeded in %s", r.Hook, fmtDuration(r.Duration))
	}
}

// Run finds the hook for req.Env.State and runs it to completion, timeout
// or cancellation; see the package documentation for the contract. It
// returns when the hook process has exited and its output has been
// delivered, never waiting on processes the hook left behind.
func Run(ctx context.Context, req Request) Result {
	env := req.Env
	res := Result{Hook: env.State, ExitCode: -1}
	if env.Name == "" {
		res.Err = &hookError{ErrInvalid, fmt.Sprintf("hook %s: no VM name given", env.State)}
		return res
	}
	scriptPath := req.ScriptPath
	if scriptPath == "" {
		scriptPath = env.ConfigDir
	}
	path, err := Find(scriptPath, env.State, req.Strict.Enabled())
	if err != nil {
		res.Err = err
		return res
	}
	if path == "" {
		res.Skipped = true
		res.ExitCode = 0
		return res
	}
	res.Path = path
	// From here on the hook is the file opened now: what runs is this
	// descriptor (and its interpreter's), never the name looked up again.
	prog, err := openHook(path, req.Strict.Enabled())
	if err != nil {
		res.Err = err
		return res
	}
	defer prog.Close()
	if ctx.Err() != nil {
		res.Canceled = true
		res.Err = &hookError{ErrCanceled, fmt.Sprintf("hook %s not run: canceled before it started", env.State)}
		return res
	}
	timeout, grace := req.Timeout, req.Grace
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if grace <= 0 {
		grace = DefaultGrace
	}
	res.Timeout = timeout
	dir := env.ConfigDir
	if dir == "" {
		dir = scriptPath
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		res.Err = &hookError{ErrStart, fmt.Sprintf("hook %s could not be started: %v", env.State, err)}
		return res
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		res.Err = &hookError{ErrStart, fmt.Sprintf("hook %s could not be started: %v", env.State, err)}
		return res
	}
	// $0 of a script is the descriptor it is read from (see the package
	// documentation); the hook's path is here.
	environ := append(env.Environ(), "VMSTATED_HOOK="+path)
	var gateR, gateW *os.File
	if req.StatusFile != "" {
		if gateR, gateW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			res.Err = &hookError{ErrStart, fmt.Sprintf("hook %s could not be started: %v", env.State, err)}
			return res
		}
		defer gateW.Close()
	}
	var cmd *exec.Cmd
	var start time.Time
	for attempt := 0; ; attempt++ {
		// The hook's descriptors follow the gate's (fd 3) when there is
		// one.
		first := 3
		if gateR != nil {
			first = 4
		}
		bin, argv, files := prog.Command(first, []string{env.Name, env.State})
		if req.StatusFile != "" {
			argv[0] = bin
			bin = shell
			argv = append([]string{shell, "-c", statusShim, "vmstated-hook", req.StatusFile}, argv...)
		}
		cmd = &exec.Cmd{
			Path:   bin,
			Args:   argv,
			Env:    environ,
			Dir:    dir,
			Stdout: outW, // *os.File: handed to the child as is, no copying goroutine
			Stderr: errW,
			// Stdin nil: os/exec opens /dev/null.
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		if gateR != nil {
			cmd.ExtraFiles = []*os.File{gateR}
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
		start = time.Now()
		err = cmd.Start()
		// "Text file busy": some process has the hook open for writing.
		// That is usually brief (an editor saving it, or another fork of
		// this process holding the descriptor until its exec), so try a
		// few more times before failing.
		if !errors.Is(err, syscall.ETXTBSY) || attempt >= 7 || ctx.Err() != nil {
			break
		}
		textBusyWait(attempt)
	}
	// The child holds its own copies now; ours must go so that end of file
	// comes when the hook (and everything it started) is done writing.
	outW.Close()
	errW.Close()
	if gateR != nil {
		gateR.Close()
	}
	if err != nil {
		outR.Close()
		errR.Close()
		res.Err = &hookError{ErrStart, startFailure(env.State, path, dir, err)}
		return res
	}

	if req.Started != nil {
		req.Started(cmd.Process.Pid)
	}
	if gateW != nil {
		// Noted: let the hook run. A wrapper that died already makes the
		// write fail, and its exit status says what happened.
		_, _ = gateW.Write([]byte("go\n"))
		gateW.Close()
	}
	sink := newLineSink(req.Output)
	streams := []*lineStream{
		sink.stream(outR, "[hook "+env.State+"] "),
		sink.stream(errR, "[hook "+env.State+" stderr] "),
	}
	// Most hooks print little and finish in a few milliseconds: their
	// output fits in the pipes, and Run reads it after they exit without
	// starting any goroutine. Readers start only for a hook still running
	// after readerDelay, so that a chatty one never blocks on a full pipe
	// for longer than that.
	lazy := &lazyReaders{}
	readerTimer := time.AfterFunc(readerDelay, func() { lazy.start(streams) })
	// Wait in this goroutine, as plain os/exec does, and enforce the
	// timeout and cancellation from timer and context callbacks: extra
	// goroutines to hand the wait to cost a measurable share of a short
	// hook's run on a small machine.
	st := &stopper{pgid: cmd.Process.Pid, grace: grace, start: start}
	timer := time.AfterFunc(timeout, func() { st.stop(false) })
	stopCtx := context.AfterFunc(ctx, func() { st.stop(true) })
	waitErr := cmd.Wait() // an exit status is read from cmd.ProcessState below
	res.Duration = time.Since(start)
	timer.Stop()
	stopCtx()
	w := st.finish()
	res.TimedOut, res.Canceled, res.Stopped = w.timedOut, w.canceled, w.stopped
	stoppedAt := w.at
	if w.stopped == "SIGTERM" && pursueGroup(cmd.Process.Pid, start.Add(w.at+grace)) {
		res.Stopped = "SIGKILL"
	}

	readerTimer.Stop()
	if lazy.finish() {
		for _, ls := range streams {
			ls.drain()
		}
		for _, ls := range streams {
			<-ls.stopped
		}
	} else {
		for _, ls := range streams {
			ls.finishInline()
		}
	}
	sink.detach()

	if cmd.ProcessState == nil {
		// Only if something else in the process reaped the child.
		res.Err = &hookError{ErrFailed, fmt.Sprintf("hook %s: its exit status is lost: %v", env.State, waitErr)}
		return res
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = signalName(ws.Signal())
	} else {
		res.ExitCode = cmd.ProcessState.ExitCode()
		if req.StatusFile != "" && res.ExitCode > 128 && res.ExitCode < 128+65 {
			// The wrapper turns the hook's death by a signal into 128+N.
			res.Signal, res.ExitCode = signalName(syscall.Signal(res.ExitCode-128)), -1
		}
	}
	res.Err = failure(res, stoppedAt)
	return res
}

// readerDelay is how long a hook runs before goroutines start reading its
// output; until then the pipes buffer it.
const readerDelay = 10 * time.Millisecond

// lazyReaders starts the reader goroutines once, unless the hook has
// exited first.
type lazyReaders struct {
	mu       sync.Mutex
	started  bool
	finished bool
}

func (l *lazyReaders) start(streams []*lineStream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	l.started = true
	for _, ls := range streams {
		go ls.read()
	}
}

// finish reports whether the readers were started; after it, they never
// will be.
func (l *lazyReaders) finish() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finished = true
	return l.started
}

// watchOutcome is what the stopper did to the hook.
type watchOutcome struct {
	timedOut, canceled bool
	stopped            string        // strongest signal sent, if any
	at                 time.Duration // when stopping began, after start
}

// stopper ends a hook's process group on timeout or cancellation: SIGTERM
// first, SIGKILL if the hook has not exited after the grace period. Its
// mutex belongs to one run.
type stopper struct {
	mu     sync.Mutex
	pgid   int
	grace  time.Duration
	start  time.Time
	exited bool
	kill   *time.Timer
	w      watchOutcome
}

func (s *stopper) stop(canceled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited || s.w.stopped != "" {
		return
	}
	s.w.timedOut, s.w.canceled = !canceled, canceled
	s.w.at = time.Since(s.start)
	s.w.stopped = "SIGTERM"
	// The leader may have been reaped an instant ago (finish runs right
	// after); the group id cannot have been reused in that time, and any
	// leftover members of the group belong to this hook.
	_ = syscall.Kill(-s.pgid, syscall.SIGTERM)
	s.kill = time.AfterFunc(s.grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.exited {
			s.w.stopped = "SIGKILL"
			_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
		}
	})
}

// finish records that the hook has exited, so no signal is sent after it,
// and reports what was done.
func (s *stopper) finish() watchOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exited = true
	if s.kill != nil {
		s.kill.Stop()
	}
	return s.w
}

// pursueGroup finishes stopping a hook whose own process exited after
// SIGTERM: members of its group that are still there when the grace period
// ends get SIGKILL too, as a stopped hook must not leave its work running.
// It reports whether it had to send SIGKILL. (A successful hook's leftover
// processes are never pursued; only a timed-out or canceled one's are.)
func pursueGroup(pgid int, deadline time.Time) (killed bool) {
	// While any member is alive the kernel keeps the group id in use, so
	// it cannot name some other group.
	for syscall.Kill(-pgid, 0) == nil {
		if !time.Now().Before(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return true
		}
		time.Sleep(min(20*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
	return false
}

// failure builds the error for a finished run, nil on success.
// stoppedAt is when Run began stopping it (timeout or cancellation).
func failure(r Result, stoppedAt time.Duration) error {
	how := ""
	switch r.Stopped {
	case "SIGTERM":
		how = " (stopped with SIGTERM)"
	case "SIGKILL":
		how = " (killed with SIGKILL)"
	}
	switch {
	case r.TimedOut:
		return &hookError{ErrTimeout, fmt.Sprintf("hook %s timed out after %s%s", r.Hook, fmtDuration(r.Timeout), how)}
	case r.Canceled:
		return &hookError{ErrCanceled, fmt.Sprintf("hook %s canceled after %s%s", r.Hook, fmtDuration(stoppedAt), how)}
	case r.Signal != "":
		return &hookError{ErrFailed, fmt.Sprintf("hook %s was killed by signal %s", r.Hook, r.Signal)}
	case r.ExitCode != 0:
		return &hookError{ErrFailed, fmt.Sprintf("hook %s exited with status %d", r.Hook, r.ExitCode)}
	}
	return nil
}

// openHook opens the hook found at path for running, under the trust
// rule when strict, and checks that the opened file is executable.
func openHook(path string, strict bool) (*trust.Program, error) {
	prog, err := trust.OpenProgram(path, strict)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// Find saw the hook a moment ago: what is missing is, almost
			// always, its interpreter.
			return nil, &hookError{ErrStart, fmt.Sprintf("hook %s could not be started: %v: fix the #! line of %s", path, err, path)}
		}
		if errors.Is(err, trust.ErrUntrusted) || errors.Is(err, trust.ErrNotRegular) {
			return nil, refusal(path, err)
		}
		return nil, &hookError{ErrStart, fmt.Sprintf("hook %s could not be started: %v", path, err)}
	}
	if fi, err := prog.File.Stat(); err != nil || fi.Mode().Perm()&0o111 == 0 {
		prog.Close()
		return nil, &hookError{ErrNotExecutable, fmt.Sprintf("hook %s is not executable: run chmod +x %s", path, path)}
	}
	return prog, nil
}

// startFailure explains an exec failure, with a hint for the usual causes.
func startFailure(state, path, dir string, err error) string {
	msg := fmt.Sprintf("hook %s could not be started: %v", state, err)
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Op == "chdir" {
		return fmt.Sprintf("hook %s could not be started: working directory %s: %v", state, dir, pe.Err)
	}
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		msg += fmt.Sprintf(": make %s start with a #! line naming its interpreter", path)
	case errors.Is(err, syscall.ENOENT):
		msg += fmt.Sprintf(": the interpreter named on the #! line of %s may not exist", path)
	case errors.Is(err, syscall.ETXTBSY):
		msg += fmt.Sprintf(": a process keeps %s open for writing", path)
	case errors.Is(err, syscall.EACCES):
		msg += fmt.Sprintf(": check the permissions of %s and its interpreter, and that its file system is not mounted noexec", path)
	}
	return msg
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}

// fmtDuration prints a duration the way people write timeouts: "60s",
// "1.5s", "250ms".
func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	s := strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + "s"
}

// textBusyWait waits before another try of a hook that was busy ("text
// file busy"), a little longer each time. A variable so that a test can
// end the busy spell at the moment a retry is due, instead of racing it.
var textBusyWait = func(attempt int) {
	time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
}
