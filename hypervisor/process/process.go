// Package process launches VM processes and watches them until they exit.
//
// A VM process must outlive the daemon that started it: it runs in its own
// session, reads /dev/null, and writes its output to a file rather than to a
// pipe. After the daemon restarts, Attach re-adopts such a process by pid and
// start time (which together name one process across pid reuse) and learns
// of its exit, and where the host reports it its exit status, without
// polling. A Group is every process a VM's program starts (its process
// group, and its cgroup where one can be made), to signal and to end
// together. Follow copies what the process writes into its output file to a
// writer, resuming where it left off across restarts.
package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/vmstated/vmstated/hypervisor"
)

// Config says how to start a process.
type Config struct {
	// Path is the program to run; Args are its arguments (without the
	// program name itself).
	Path string
	Args []string
	// Dir is the working directory; empty means "/", so the process does
	// not pin the daemon's working directory.
	Dir string
	// Env is the complete environment. Nil means a minimal clean one
	// (DefaultEnv); the daemon's own environment is never passed on.
	Env []string
	// OutputPath receives the process's stdout and stderr. The file is
	// opened O_APPEND (created 0640 if missing), so it keeps output across
	// restarts of the VM. Empty means /dev/null.
	OutputPath string
	// Gated keeps the program from running before the caller has recorded
	// where a restarted daemon finds the process (a driver's handle file),
	// so that no VM can run that such a daemon cannot find. A process
	// started in a cgroup (Cgroup) needs no wait: the kernel places it
	// there as it creates it, so the cgroup, recorded by the caller before
	// Start, names it from its first instruction. Any other gated process
	// starts as a small /bin/sh that waits on a pipe until Release and
	// then executes the program in its place (same pid, same start time);
	// if the caller dies before releasing it, the pipe closes and the
	// process exits without running the program.
	Gated bool
	// Cgroup, if not empty, is the cgroup (made by MakeCgroup) the
	// process starts in (CLONE_INTO_CGROUP); Group then names it and
	// Group.EndLeftovers removes it. Where the kernel cannot start a
	// process in a cgroup (before Linux 5.7), Start removes the cgroup
	// and starts the process without one, through the /bin/sh gate when
	// Gated.
	Cgroup string
	// Terminal, if not nil, is the terminal side of a pseudo-terminal:
	// the process gets it as stdin, stdout and stderr and as the
	// controlling terminal of its new session, instead of /dev/null and
	// OutputPath.
	Terminal *os.File
	// Inherit are descriptors the process inherits, as descriptors
	// InheritFD(0), InheritFD(1), ...; they are open in the program too.
	Inherit []*os.File
}

// InheritFD is the descriptor number Inherit[i] has in the process: from
// 4 on. Descriptor 3 is the gate's pipe, closed before the program runs
// (and not open at all in a process started without the gate), so that
// the numbers are the same either way.
func (cfg Config) InheritFD(i int) int { return 4 + i }

// gateScript waits for the word on fd 3, closes it and becomes the program
// ($0 with its arguments). Exit status 125 means the gate was never opened.
const gateScript = `read -r go <&3 || exit 125; exec 3<&-; exec "$0" "$@"`

// DefaultEnv is the environment given to a process whose Config.Env is nil.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// Status is how a process ended.
type Status struct {
	// Code is the exit status, -1 if the process was ended by a signal or
	// the status is unknown.
	Code int
	// Signal is the signal that ended the process, 0 if none or unknown.
	Signal syscall.Signal
	// Known is false when the status could not be observed: an attached
	// process is not the daemon's child, and is only known where the host
	// reports exits of any process (Linux: the proc connector; FreeBSD:
	// kqueue). Why then says what was missing.
	Known bool
	Why   string
}

// Process is a running or exited process, started by Start or re-adopted by
// Attach. Its methods are safe for concurrent use.
type Process struct {
	pid       int
	startTime uint64
	done      chan struct{}

	mu     sync.Mutex
	exited bool
	status Status
	onExit []func()

	// child is set for processes this daemon started.
	child *os.Process
	// attached holds the OS-specific handle of a re-adopted process.
	attached attachHandle

	// cgroup is the cgroup a started process runs in, "" if none.
	cgroup string

	// gate is the write end of a Gated process's pipe until Release.
	gate     *os.File
	gateOnce sync.Once
	gateErr  error
}

// ErrInvalid is wrapped by errors about an unusable Config.
var ErrInvalid = errors.New("invalid process config")

// Start launches a process in a new session with stdin from /dev/null and
// stdout and stderr appended to cfg.OutputPath (or all three on
// cfg.Terminal). The caller's process is its
// parent and reaps it; Done is closed once it has exited.
func Start(cfg Config) (*Process, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: no program to run", ErrInvalid)
	}
	out, err := openOutput(cfg.OutputPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own copy

	cgroup := cfg.Cgroup
	var cg *os.File
	if cgroup != "" {
		if cg, err = os.Open(cgroup); err != nil {
			_ = Group{Cgroup: cgroup}.Remove()
			cgroup = ""
		}
	}
	cmd, gate, err := command(cfg, out, cg)
	if err != nil {
		return nil, err
	}
	err = cmd.Start()
	if cg != nil {
		cg.Close()
		if err != nil {
			// A kernel without CLONE_INTO_CGROUP (before 5.7): the VM
			// runs with its process group only, and waits at the gate.
			_ = Group{Cgroup: cgroup}.Remove()
			cgroup = ""
			if cmd, gate, err = command(cfg, out, nil); err != nil {
				return nil, err
			}
			err = cmd.Start()
		}
	}
	if gate != nil {
		// The child holds its own copy of the read end.
		cmd.ExtraFiles[0].Close()
	}
	if err != nil {
		if gate != nil {
			gate.Close()
		}
		return nil, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	p := &Process{pid: cmd.Process.Pid, done: make(chan struct{}), child: cmd.Process, gate: gate, cgroup: cgroup}
	// The child cannot be reaped before we Wait, so its stat entry exists.
	st, err := StartTimeOf(p.pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = Group{Cgroup: cgroup}.Remove()
		return nil, fmt.Errorf("start %s: read start time of pid %d: %w", cfg.Path, p.pid, err)
	}
	p.startTime = st
	p.reapWhenExited(cmd.Process)
	return p, nil
}

// command prepares the start of cfg's process, in the cgroup open as cg
// if not nil. A gated process started outside a cgroup runs the gate
// first: gate is then the write end of its pipe, whose read end is the
// command's first extra file (descriptor 3).
func command(cfg Config, out *os.File, cg *os.File) (cmd *exec.Cmd, gate *os.File, err error) {
	path, args := cfg.Path, cfg.Args
	// A nil extra file is a descriptor closed in the child.
	extra := append([]*os.File{nil}, cfg.Inherit...)
	if cfg.Gated && cg == nil {
		// The wrapper would report a missing program only as an exit
		// status; check now so the caller gets a real error.
		lp, err := exec.LookPath(cfg.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", cfg.Path, err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", cfg.Path, err)
		}
		gate, extra[0] = w, r
		path, args = "/bin/sh", append([]string{"-c", gateScript, lp}, cfg.Args...)
	}
	cmd = exec.Command(path, args...)
	cmd.ExtraFiles = extra
	cmd.Dir = cfg.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = cfg.Env
	if cmd.Env == nil {
		cmd.Env = DefaultEnv
	}
	if f := devNull(); f != nil {
		cmd.Stdin = f
	} // else os/exec opens /dev/null itself
	cmd.Stdout = out
	cmd.Stderr = out
	// A new session, and with it a process group the process leads:
	// terminal and process-group signals aimed at the daemon (Ctrl-C,
	// kill -- -pgid) do not reach the VM, and the VM's own group holds
	// what it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cfg.Terminal != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Terminal, cfg.Terminal, cfg.Terminal
		// Ctty is the process's descriptor 0, the terminal.
		cmd.SysProcAttr.Setctty = true
	}
	if cg != nil {
		intoCgroup(cmd.SysProcAttr, cg)
	}
	return cmd, gate, nil
}

// Group returns the process group a started process leads and the cgroup
// it was started in (see Config.CgroupName).
func (p *Process) Group() Group {
	return Group{PGID: p.pid, LeaderStart: p.startTime, Cgroup: p.cgroup}
}

// Release lets a Gated process run its program. It does nothing for a
// process that was not gated, started in a cgroup, or released already.
func (p *Process) Release() error {
	p.gateOnce.Do(func() {
		if p.gate == nil {
			return
		}
		_, p.gateErr = p.gate.Write([]byte("go\n"))
		if err := p.gate.Close(); p.gateErr == nil {
			p.gateErr = err
		}
	})
	return p.gateErr
}

// devNull is /dev/null open for reading, every VM's stdin: opened once,
// not at every launch. Nil if it cannot be opened.
var devNull = sync.OnceValue(func() *os.File {
	f, _ := os.Open(os.DevNull)
	return f
})

func openOutput(path string) (*os.File, error) {
	if path == "" {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open output file (check that its directory exists and is writable): %w", err)
	}
	return f, nil
}

// Attach re-adopts a process that is not this daemon's child, typically one
// started before the daemon restarted. It returns an error wrapping
// hypervisor.ErrGone when no process has that pid, when the pid now belongs
// to a process with another start time, or when the process has already
// exited (a zombie waiting to be reaped). The exit of an attached process is
// seen when it happens (pidfd on Linux, kqueue on FreeBSD), and so is its
// status where the host reports it for processes that are not one's
// children (the proc connector on Linux; kqueue on FreeBSD); elsewhere
// Status.Known is false.
func Attach(pid int, startTime uint64) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("attach to pid %d: %w: not a valid pid", pid, hypervisor.ErrGone)
	}
	p := &Process{pid: pid, startTime: startTime, done: make(chan struct{})}
	if err := p.attach(); err != nil {
		return nil, err
	}
	return p, nil
}

// reap waits for child, this daemon's child, and records how it ended.
func (p *Process) reap(child *os.Process) {
	ps, err := child.Wait()
	s := Status{Code: -1}
	if err == nil {
		s.Known = true
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			s.Signal = ws.Signal()
		} else {
			s.Code = ps.ExitCode()
		}
	}
	p.finish(s)
}

// finish records the exit status once, wakes every waiter and runs the
// OnExit functions.
func (p *Process) finish(s Status) {
	p.mu.Lock()
	if p.exited {
		p.mu.Unlock()
		return
	}
	p.exited = true
	p.status = s
	p.releaseAttached()
	close(p.done)
	fns := p.onExit
	p.onExit = nil
	p.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// OnExit runs fn once the process has exited (Done is closed and Status
// final); if it has already, fn runs at once in a new goroutine. The
// functions run one after another in a goroutine that serves only this
// process's exit, so fn may take its time. Unlike a goroutine waiting on
// Done, a registered fn costs nothing while the process runs.
func (p *Process) OnExit(fn func()) {
	p.mu.Lock()
	if !p.exited {
		p.onExit = append(p.onExit, fn)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	go fn()
}

// PID returns the process id.
func (p *Process) PID() int { return p.pid }

// StartTime returns the start time the kernel reports for the process (see
// StartTimeOf).
func (p *Process) StartTime() uint64 { return p.startTime }

// Done is closed once the process has exited. Any number of goroutines may
// wait on it.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status returns how the process ended; ok is false while it runs.
func (p *Process) Status() (s Status, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exited
}

// Signal sends sig to the process. Signalling a process that has already
// exited is not an error. On Linux the signal can never reach another
// process that reused the pid; on FreeBSD the start time is checked right
// before the signal is sent.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalLocked(sig)
}

// signalLocked signals the process alone; p.mu is held.
func (p *Process) signalLocked(sig syscall.Signal) error {
	if p.exited {
		return nil
	}
	var err error
	if p.child != nil {
		err = p.child.Signal(sig)
		if errors.Is(err, os.ErrProcessDone) {
			err = nil
		}
	} else {
		err = p.signalAttached(sig)
	}
	if err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid, err)
	}
	return nil
}
