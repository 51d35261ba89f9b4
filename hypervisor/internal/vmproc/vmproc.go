// Package vmproc is the part of an Instance that drivers whose VM is one
// plain process share: waiting for the exit, following the output file,
// remembering what the host asked for (so the exit can be classified), and
// signalling.
package vmproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// Requests records what the host asked of the process before it ended.
type Requests struct {
	// Shutdown: a graceful stop was requested (StopSignal sent).
	Shutdown bool
	// Kill: the process was killed by the driver.
	Kill bool
}

// Classifier turns a process status into an Exit. Time is filled in by
// the Instance.
type Classifier func(s process.Status, req Requests) hypervisor.Exit

// Config assembles an Instance.
type Config struct {
	Proc   *process.Process
	Handle hypervisor.Handle
	// Follower, if not nil, is stopped (drained) once the process exits,
	// before Done is closed, so everything the process wrote has reached
	// the output by then.
	Follower *process.Follower
	Classify Classifier
	// StopSignal asks the process to stop gracefully.
	StopSignal syscall.Signal
	// AfterExit, if not nil, runs after the exit and before Done is closed
	// (bhyve: destroy the VM's kernel state). A message it returns is
	// appended to the Exit's Detail.
	AfterExit func() string
	// OnKill, if not nil, runs after SIGKILL was sent by Kill.
	OnKill func()
	// Group, if not nil, is every process of the VM (exec: the process
	// and all it starts). The stop signal (followed by SIGCONT, so that a
	// stopped process can act on it), SIGKILL and the signals of Signal
	// go to all of it, and once the process has exited whatever is left
	// of the group is killed, before Done is closed: the VM is not over
	// while its children still run.
	Group *process.Group
}

// Instance implements hypervisor.Instance for a single-process VM.
type Instance struct {
	cfg  Config
	done chan struct{}

	mu     sync.Mutex
	req    Requests
	exit   hypervisor.Exit
	exited bool
}

// New returns an Instance watching cfg.Proc.
func New(cfg Config) *Instance {
	if cfg.StopSignal == 0 {
		cfg.StopSignal = syscall.SIGTERM
	}
	i := &Instance{cfg: cfg, done: make(chan struct{})}
	// No goroutine waits while the VM runs: a host may run a thousand.
	cfg.Proc.OnExit(i.settle)
	return i
}

// settle works out and records the Exit once the process has ended.
func (i *Instance) settle() {
	st, _ := i.cfg.Proc.Status()
	var leftovers string
	if i.cfg.Group != nil {
		leftovers = i.cfg.Group.EndLeftovers()
	}
	if i.cfg.Follower != nil {
		_ = i.cfg.Follower.Stop() // output errors must not hide the exit
	}
	i.mu.Lock()
	req := i.req
	i.mu.Unlock()
	exit := i.cfg.Classify(st, req)
	addDetail(&exit, leftovers)
	if i.cfg.AfterExit != nil {
		addDetail(&exit, i.cfg.AfterExit())
	}
	exit.Time = time.Now()
	i.mu.Lock()
	i.exit = exit
	i.exited = true
	i.mu.Unlock()
	close(i.done)
}

func addDetail(e *hypervisor.Exit, msg string) {
	if msg == "" {
		return
	}
	if e.Detail != "" {
		e.Detail += "; "
	}
	e.Detail += msg
}

// Handle returns what to persist to recover the instance.
func (i *Instance) Handle() hypervisor.Handle { return i.cfg.Handle }

// Done is closed once the process has exited and Exit is final.
func (i *Instance) Done() <-chan struct{} { return i.done }

// Exit returns how the process ended; ok is false while it runs.
func (i *Instance) Exit() (hypervisor.Exit, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.exit, i.exited
}

// Process returns the watched process.
func (i *Instance) Process() *process.Process { return i.cfg.Proc }

// Shutdown sends the stop signal. It returns an error wrapping
// hypervisor.ErrExited when the process has already exited.
func (i *Instance) Shutdown(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, exited := i.cfg.Proc.Status(); exited {
		return fmt.Errorf("shutdown pid %d: %w", i.cfg.Proc.PID(), hypervisor.ErrExited)
	}
	i.mu.Lock()
	i.req.Shutdown = true
	i.mu.Unlock()
	if g := i.cfg.Group; g != nil {
		if err := g.Signal(i.cfg.StopSignal); err != nil {
			return err
		}
		// Only a help for a paused VM; the group may be gone by now.
		_ = g.Signal(syscall.SIGCONT)
		return nil
	}
	return i.cfg.Proc.Signal(i.cfg.StopSignal)
}

// Kill sends SIGKILL; killing an exited process is not an error.
func (i *Instance) Kill() error {
	if _, exited := i.cfg.Proc.Status(); exited {
		return nil
	}
	i.mu.Lock()
	i.req.Kill = true
	i.mu.Unlock()
	err := i.cfg.Proc.Signal(syscall.SIGKILL)
	if g := i.cfg.Group; g != nil {
		if gerr := g.Signal(syscall.SIGKILL); err == nil {
			err = gerr
		}
	}
	if i.cfg.OnKill != nil {
		i.cfg.OnKill()
	}
	return err
}

// Signal sends sig without recording a request; for Pause and Resume.
// It returns an error wrapping hypervisor.ErrExited after the exit.
func (i *Instance) Signal(sig syscall.Signal) error {
	if _, exited := i.cfg.Proc.Status(); exited {
		return fmt.Errorf("signal pid %d: %w", i.cfg.Proc.PID(), hypervisor.ErrExited)
	}
	if g := i.cfg.Group; g != nil {
		return g.Signal(sig)
	}
	return i.cfg.Proc.Signal(sig)
}

// SignalName names a signal the way Exit.Signal does ("SIGTERM").
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// ClassifySignalled classifies the exits every single-process driver sees
// alike: an unobservable status, and death by a signal. It returns ok ==
// false for a plain exit code, which the driver maps itself.
//
//   - status unknown (a re-adopted process where the host does not
//     report it): Exit.StatusUnknown, and killed if Kill was asked,
//     poweroff if Shutdown was, else crash;
//   - SIGKILL after Kill: killed;
//   - stopSig after Shutdown: poweroff (the graceful stop worked);
//   - SIGTERM, SIGINT, SIGHUP or SIGKILL from someone else: killed;
//   - any other signal (SIGSEGV, SIGABRT, ...): crash.
func ClassifySignalled(s process.Status, req Requests, stopSig syscall.Signal) (hypervisor.Exit, bool) {
	e := hypervisor.Exit{Code: -1}
	switch {
	case !s.Known:
		unknown := "exit status unknown"
		if s.Why != "" {
			unknown += ": " + s.Why
		}
		e.StatusUnknown = true
		switch {
		case req.Kill:
			e.Reason, e.Detail = hypervisor.ExitKilled, "killed; "+unknown
		case req.Shutdown:
			e.Reason, e.Detail = hypervisor.ExitPoweroff, "stopped on request; "+unknown
		default:
			e.Reason, e.Detail = hypervisor.ExitCrash, unknown
		}
		return e, true
	case s.Signal != 0:
		e.Signal = SignalName(s.Signal)
		switch {
		case s.Signal == syscall.SIGKILL && req.Kill:
			e.Reason, e.Detail = hypervisor.ExitKilled, "killed by vmstated"
		case s.Signal == stopSig && req.Shutdown:
			e.Reason, e.Detail = hypervisor.ExitPoweroff, "stopped by "+e.Signal
		case s.Signal == syscall.SIGTERM || s.Signal == syscall.SIGINT || s.Signal == syscall.SIGHUP || s.Signal == syscall.SIGKILL:
			e.Reason, e.Detail = hypervisor.ExitKilled, e.Signal+" sent by someone else on the host"
		default:
			e.Reason, e.Detail = hypervisor.ExitCrash, "killed by "+e.Signal
		}
		return e, true
	}
	return hypervisor.Exit{Code: s.Code}, false
}

// Launch finishes a gated start: it leaves h in the run directory, where a
// daemon that dies from here on finds the process, then lets the process
// run. If either fails, the launch is abandoned (see Abandon): a process
// that a new daemon could not find must not run.
func Launch(p *process.Process, h hypervisor.Handle, fl *process.Follower) error {
	err := hypervisor.WriteHandleFile(h)
	if err != nil {
		err = fmt.Errorf("record the hypervisor's handle in the run directory: %w", err)
	} else {
		err = p.Release()
	}
	if err != nil {
		Abandon(p, fl)
	}
	return err
}

// Abandon ends a launch that cannot go on: it kills the process with
// whatever it started already (a process started in a cgroup runs at
// once), waits for it, removes its cgroup and stops the follower (if not
// nil).
func Abandon(p *process.Process, fl *process.Follower) {
	g := p.Group()
	_ = g.Signal(syscall.SIGKILL)
	_ = p.Signal(syscall.SIGKILL)
	<-p.Done()
	_ = g.EndLeftovers()
	if fl != nil {
		_ = fl.Stop()
	}
}

// DecodeHandle checks that h is a handle of driver this daemon can read and
// decodes its driver-private part into extra.
func DecodeHandle(h hypervisor.Handle, driver string, extra any) error {
	if h.Driver != driver {
		return fmt.Errorf("recover: handle is for driver %q, not %q", h.Driver, driver)
	}
	if h.Version > hypervisor.HandleVersion {
		return fmt.Errorf("recover: handle version %d is newer than this daemon understands (%d)", h.Version, hypervisor.HandleVersion)
	}
	if len(h.Extra) > 0 {
		if err := json.Unmarshal(h.Extra, extra); err != nil {
			return fmt.Errorf("recover: driver state in handle: %w", err)
		}
	}
	return nil
}

// Reattach finds a process of an earlier daemon again by its handle and
// resumes following its output file into w. A follower that cannot be set
// up is left out: the VM runs on, only its output is not followed.
func Reattach(h hypervisor.Handle, output string, w io.Writer) (*process.Process, *process.Follower, error) {
	p, err := process.Attach(h.PID, h.StartTime)
	if err != nil {
		return nil, nil, fmt.Errorf("recover: %w", err)
	}
	fl, err := process.Follow(context.Background(), output, w)
	if err != nil {
		fl = nil
	}
	return p, fl, nil
}
