package daemon

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

	"golang.org/x/sys/unix"
)

// childEnv marks a process started by Background; its value is the number of
// the readiness pipe's file descriptor.
const childEnv = "VMSTATED_DAEMON_CHILD"

const (
	childFD  = 3 // first of exec.Cmd.ExtraFiles
	msgReady = "READY\n"
	msgFail  = "FAIL "
	msgNote  = "NOTE " // one line each, before READY
	maxMsg   = 64 << 10
)

// Readiness tells whoever started the daemon how start-up went. Only the
// first call to Ready or Fail counts; later calls do nothing.
type Readiness interface {
	// Ready reports a successful start: configs loaded, socket bound. An
	// error only means nobody is listening any more (the parent was
	// killed); the daemon should log it and carry on.
	Ready() error
	// Fail reports why the start failed; the caller then exits.
	Fail(error)
	// Note adds a line for whoever started the daemon to read, sent with
	// Ready: something to know although the start succeeded (VMs whose
	// config did not load); an empty line adds nothing. In the
	// foreground, where the daemon's log is on stderr already, it does
	// nothing.
	Note(line string)
}

// child is the readiness pipe of a process started by Background, or nil.
// It is picked up at package initialisation, before main can start any
// hook or VM process, so that the pipe is marked close-on-exec before
// anything could inherit it: an inherited copy would keep the parent waiting
// after the daemon died. The marker is removed from the environment for the
// same reason.
var child = takeChildPipe()

func takeChildPipe() *pipeReadiness {
	v, ok := os.LookupEnv(childEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(childEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	// Only trust a write-only pipe: a stray variable in a user's shell must
	// not make us write into some unrelated file.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ACCMODE != unix.O_WRONLY {
		return nil
	}
	unix.CloseOnExec(fd)
	return &pipeReadiness{f: os.NewFile(uintptr(fd), "readiness pipe")}
}

// ChildReadiness returns how this process reports readiness: through the pipe
// when it was started by Background, otherwise a Readiness that does nothing
// (running in the foreground, start-up errors go to stderr directly).
func ChildReadiness() Readiness {
	if child != nil {
		return child
	}
	return noReadiness{}
}

type noReadiness struct{}

func (noReadiness) Ready() error { return nil }
func (noReadiness) Fail(error)   {}
func (noReadiness) Note(string)  {}

type pipeReadiness struct {
	mu    sync.Mutex
	f     *os.File
	notes []string
}

func (p *pipeReadiness) Ready() error {
	p.mu.Lock()
	var b strings.Builder
	for _, n := range p.notes {
		b.WriteString(msgNote + n + "\n")
	}
	p.mu.Unlock()
	return p.send(b.String() + msgReady)
}

func (p *pipeReadiness) Note(line string) {
	line = strings.Join(strings.Fields(line), " ")
	if line == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, line)
}

func (p *pipeReadiness) Fail(err error) {
	msg := "start-up failed"
	if err != nil {
		msg = err.Error()
	}
	p.send(msgFail + msg)
}

func (p *pipeReadiness) send(msg string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	_, werr := io.WriteString(p.f, msg)
	cerr := p.f.Close()
	p.f = nil
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("report readiness: %w", err)
	}
	return nil
}

// Background puts the daemon in the background. In a process that
// Background started it returns child=true at once and the caller goes on
// as the daemon (see ChildReadiness). Otherwise it starts that process and
// waits for its readiness report, returning child=false and nil when the
// daemon is ready, or the daemon's error: the caller then exits, with
// status 0 on nil. The lines the daemon sent with Readiness.Note go to
// stderr first, each after "vmstated: ". output names a file that receives the daemon's stdout and
// stderr (appended; created 0640), "" for /dev/null. If ctx ends first,
// Background stops waiting; the daemon may still be starting.
func Background(ctx context.Context, output string) (isChild bool, err error) {
	if child != nil {
		return true, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return false, fmt.Errorf("go to background: find own executable: %w", err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("go to background: %w", err)
	}
	defer devnull.Close()
	out := devnull
	where := "its output was discarded; run with -f to see it"
	if output != "" {
		out, err = os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return false, fmt.Errorf("go to background: open output file: %w", err)
		}
		defer out.Close()
		where = "see " + output
	}
	r, w, err := os.Pipe()
	if err != nil {
		return false, fmt.Errorf("go to background: %w", err)
	}
	defer r.Close()

	cmd := exec.Command(exe)
	if len(os.Args) > 0 {
		cmd.Args = os.Args // keep argv[0] as the user typed it, for ps
	}
	cmd.Env = append(withoutVar(os.Environ(), childEnv), childEnv+"="+strconv.Itoa(childFD))
	cmd.Stdin = devnull
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close() // only the child may hold the write end, or EOF never comes
	if err != nil {
		return false, fmt.Errorf("go to background: %w", err)
	}
	pid := cmd.Process.Pid

	got := make(chan []byte, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(r, maxMsg))
		got <- msg
	}()
	var msg []byte
	select {
	case msg = <-got:
	case <-ctx.Done():
		cmd.Process.Release()
		return false, fmt.Errorf("gave up waiting for the background daemon (pid %d) to be ready: %w; it may still be starting", pid, ctx.Err())
	}

	s := string(msg)
	for strings.HasPrefix(s, msgNote) {
		line, rest, _ := strings.Cut(strings.TrimPrefix(s, msgNote), "\n")
		fmt.Fprintf(os.Stderr, "vmstated: %s\n", line)
		s = rest
	}
	switch {
	case s == msgReady:
		cmd.Process.Release()
		return false, nil
	case strings.HasPrefix(s, msgFail):
		// The child exits on its own; nobody needs its status.
		cmd.Process.Release()
		text := strings.TrimSpace(strings.TrimPrefix(s, msgFail))
		if text == "" {
			text = fmt.Sprintf("background daemon (pid %d) failed to start without saying why", pid)
		}
		return false, errors.New(text)
	case s == "":
		var werr error
		done := make(chan struct{})
		go func() { werr = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return false, fmt.Errorf("background daemon (pid %d) closed its readiness pipe without a word and is still running: %w", pid, ctx.Err())
		}
		status := "exit status 0"
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			status = ee.ProcessState.String()
		} else if werr != nil {
			status = werr.Error()
		}
		return false, fmt.Errorf("background daemon (pid %d) exited before it was ready (%s); %s", pid, status, where)
	default:
		cmd.Process.Release()
		return false, fmt.Errorf("background daemon (pid %d) sent an unknown readiness message %q", pid, s)
	}
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
