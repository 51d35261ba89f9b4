package process

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// traceGate is the Linux gate, without the pipe gate's second exec: the
// process starts traced (PTRACE_TRACEME), so the kernel stops it with
// SIGTRAP once its exec of the program has succeeded, before the
// program's first instruction; opening the gate detaches it, which
// cancels the SIGTRAP. Only the thread that started the process is its
// tracer and may detach it, so a goroutine keeps that thread until the
// gate is opened or dropped. A daemon that dies meanwhile takes its
// tracer with it; the kernel then delivers the pending SIGTRAP, and the
// process ends, having run nothing of the program.
type traceGate struct {
	pid      int
	release  chan struct{} // closed by open
	dropped  chan struct{} // closed by drop
	gone     chan struct{} // closed by ended, once the process has exited
	result   chan error    // the detach's outcome, once open
	kill     func()        // ends the process through its pidfd
	openOnce sync.Once
	dropOnce sync.Once
	goneOnce sync.Once
}

// traceRefused is set once the host refused PTRACE_TRACEME (Yama's
// ptrace_scope 3, a seccomp profile): gates are pipe gates from then on.
var traceRefused atomic.Bool

// tracingRefused makes every later gate a pipe gate.
func tracingRefused() { traceRefused.Store(true) }

// newTraceGate returns a gate to start a process with, or false where
// tracing is known to be refused.
func newTraceGate() (*traceGate, bool) {
	if traceRefused.Load() {
		return nil, false
	}
	return &traceGate{release: make(chan struct{}), dropped: make(chan struct{}), gone: make(chan struct{}),
		result: make(chan error, 1), kill: func() {}}, true
}

// start starts cmd traced, from a thread locked to the goroutine that
// then waits to open or drop the gate. A refusal of the tracing is
// reported as errTraceRefused.
func (g *traceGate) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr.Ptrace = true
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, syscall.EPERM) {
				err = fmt.Errorf("%w: %w", errTraceRefused, err)
			}
			started <- err
			return
		}
		g.pid = cmd.Process.Pid
		started <- nil
		// Dropped or gone, the process never runs the program: the
		// tracer need not stay. Every way out leaves open its answer.
		select {
		case <-g.release:
			g.result <- detachAtExec(g.pid)
		case <-g.dropped:
			g.result <- fmt.Errorf("pid %d: its gate was dropped", g.pid)
		case <-g.gone:
			g.result <- fmt.Errorf("pid %d ended before its program ran", g.pid)
		}
		runtime.UnlockOSThread()
	}()
	return <-started
}

// attach ties the gate to the process it holds: dropping the gate kills
// it, its exit frees the tracer.
func (g *traceGate) attach(p *Process) {
	g.kill = func() { _ = p.Signal(syscall.SIGKILL) }
	p.OnExit(func() { g.goneOnce.Do(func() { close(g.gone) }) })
}

// errTraceRefused marks a start that failed because the host refused to
// trace the process.
var errTraceRefused = errors.New("tracing the process at its start was refused")

// open lets the process run. Its answer comes from the tracer alone: a
// program that exits at once must not look like a process that ended
// before it ran.
func (g *traceGate) open() error {
	g.openOnce.Do(func() { close(g.release) })
	return <-g.result
}

// drop kills the process where it waits.
func (g *traceGate) drop() {
	g.dropOnce.Do(func() {
		close(g.dropped)
		g.kill()
	})
}

// CLD_TRAPPED: waitid's code for a tracee's stop (<asm-generic/siginfo.h>).
const cldTrapped = 4

// detachAtExec waits for the process's stop at its exec (already there,
// or soon) and lets it go on without the stop's SIGTRAP. A signal that
// reached it first (someone killed it as it started) stopped it first: it
// is passed on, as it would have been untraced, and the exec's stop
// waited for again.
func detachAtExec(pid int) error {
	for {
		var info unix.Siginfo
		// WNOWAIT: an exit stays for the reaper, which waits for it by
		// its pidfd.
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for pid %d to reach its program: %w", pid, err)
		}
		if info.Code != cldTrapped {
			return fmt.Errorf("pid %d ended before its program ran", pid)
		}
		if sig := childStatus(&info); sig != int32(unix.SIGTRAP) {
			if err := unix.PtraceCont(pid, int(sig)); err != nil {
				return fmt.Errorf("pid %d: passing on signal %d: ptrace: %w", pid, sig, err)
			}
			continue
		}
		if err := unix.PtraceDetach(pid); err != nil {
			return fmt.Errorf("letting pid %d run its program: ptrace detach: %w", pid, err)
		}
		return nil
	}
}

// childStatus is si_status of a SIGCHLD siginfo (the signal of a stop),
// which x/sys leaves in the union: after si_signo, si_errno and si_code,
// aligned to a pointer, come si_pid, si_uid and si_status.
func childStatus(info *unix.Siginfo) int32 {
	const ptr = unsafe.Sizeof(uintptr(0))
	union := (unsafe.Offsetof(info.Code) + 4 + ptr - 1) &^ (ptr - 1)
	return *(*int32)(unsafe.Add(unsafe.Pointer(info), union+8))
}
