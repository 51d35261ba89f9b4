// Package exec is the hypervisor driver that runs any command line as the
// VM process: a launcher script, another VMM, or a stand-in for tests. It
// runs as soon as it is started; a stop signal asks it to end, and its
// exit code says whether it powered off, wants a reboot, or crashed.
//
// The VM is every process the command starts, not just the first: the
// command leads its own process group and, on Linux as root with cgroup
// v2, runs in a cgroup of its own, which also holds children that leave
// the group. The stop signal, Kill, Pause (SIGSTOP) and Resume (SIGCONT)
// reach all of them, and once the command has exited whatever it left
// running is killed before the exit is reported. The handle records the
// group and the cgroup, so this holds after a daemon restart too.
//
// With Options.Console = ConsolePTY the program's stdin, stdout and
// stderr are a pseudo-terminal, its controlling terminal, which is the
// VM's console. The daemon holds the terminal's controlling side and the
// program a duplicate of it (TerminalFD), which keeps the terminal alive
// while no daemon runs and which a new daemon takes back.
package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/internal/ttyconsole"
	"github.com/vmstated/vmstated/hypervisor/internal/vmproc"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/trust"
)

// Name is the driver's name in configs.
const Name = "exec"

// OutputFile is the file under RunDir that captures the process's stdout
// and stderr.
const OutputFile = "output.log"

// Options are the exec driver's settings (Spec.Options is *Options).
type Options struct {
	// Command is the program and its arguments. Required.
	Command []string
	// Env is the environment; nil means a minimal clean one
	// (process.DefaultEnv).
	Env []string
	// Dir is the working directory; empty means the VM's RunDir.
	Dir string
	// StopSignal asks the process to stop gracefully; 0 means SIGTERM.
	StopSignal syscall.Signal
	// RebootExitCodes are exit codes that mean "restart me".
	RebootExitCodes []int
	// PoweroffExitCodes are exit codes that mean a clean stop; nil means
	// [0]. Any other code is a crash.
	PoweroffExitCodes []int
	// Console is ConsolePTY to give the program a pseudo-terminal as its
	// stdin, stdout, stderr and controlling terminal: its output goes to
	// Spec.Console and the instance is a hypervisor.Consoler. Empty means
	// none (stdin /dev/null, output to Spec.Output).
	Console string
}

// ErrBadOptions is wrapped by errors about unusable Options.
var ErrBadOptions = errors.New("bad exec options")

// options returns the Options in spec with defaults applied.
func options(spec hypervisor.Spec) (Options, error) {
	var o Options
	switch v := spec.Options.(type) {
	case *Options:
		if v != nil {
			o = *v
		}
	case Options:
		o = v
	case nil:
	default:
		return o, fmt.Errorf("%w: Spec.Options is %T, want *exec.Options", ErrBadOptions, spec.Options)
	}
	if o.StopSignal == 0 {
		o.StopSignal = syscall.SIGTERM
	}
	if o.PoweroffExitCodes == nil {
		o.PoweroffExitCodes = []int{0}
	}
	if o.Console != "" && o.Console != ConsolePTY {
		return o, fmt.Errorf("%w: console %q: want %q or none", ErrBadOptions, o.Console, ConsolePTY)
	}
	for _, c := range o.RebootExitCodes {
		if slices.Contains(o.PoweroffExitCodes, c) {
			return o, fmt.Errorf("%w: exit code %d is listed both as poweroff and as reboot", ErrBadOptions, c)
		}
	}
	return o, nil
}

// Driver runs command lines as VM processes. The zero value is ready to
// use and holds no state: any Driver value can Recover what another
// started.
type Driver struct{}

// New returns a Driver.
func New() *Driver { return &Driver{} }

// Name returns "exec".
func (*Driver) Name() string { return Name }

// extra is the driver-private part of the Handle.
type extra struct {
	Output string `json:"output"`
	// TerminalFD is the descriptor of the VM's process that holds the
	// terminal's duplicate (console = pty), 0 when it has none.
	TerminalFD int `json:"terminal_fd,omitempty"`
	// TerminalIndex is the terminal's number (/dev/pts/N): a new daemon
	// takes back only that one from TerminalFD. Handles written before
	// it was recorded lack it.
	TerminalIndex *uint32 `json:"terminal_index,omitempty"`
}

// Start launches the command. The process counts as running once it has
// been started, so Start returns at once.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := options(spec)
	if err != nil {
		return nil, err
	}
	if len(o.Command) == 0 || o.Command[0] == "" {
		return nil, fmt.Errorf("%w: no command: set the command to run (exec { command = [ ... ] })", ErrBadOptions)
	}
	if spec.RunDir == "" {
		return nil, fmt.Errorf("%w: Spec.RunDir is empty", ErrBadOptions)
	}
	yieldCPU()
	// Checked again at each launch: the config's load is not enough.
	if err := trust.CheckProgram(o.Command[0]); err != nil {
		return nil, fmt.Errorf("%w: program refused: %w", ErrBadOptions, err)
	}
	if err := os.MkdirAll(spec.RunDir, 0o750); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	out := filepath.Join(spec.RunDir, OutputFile)
	// Nothing writes the capture yet: emptied if copied to its end.
	_ = process.TruncateCopied(out)
	fl, err := process.Follow(context.Background(), out, spec.Output)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		dir = spec.RunDir
	}
	cfg := process.Config{Path: o.Command[0], Args: o.Command[1:], Env: o.Env, Dir: dir, OutputPath: out, Gated: true}
	var master *os.File
	x := extra{Output: out}
	if o.Console == ConsolePTY {
		var tty, dup *os.File
		if master, tty, dup, err = terminalFiles(); err != nil {
			fl.Stop()
			return nil, err
		}
		cfg.Terminal, cfg.Inherit = tty, []*os.File{dup}
		x.TerminalFD = cfg.InheritFD(0)
		if x.TerminalIndex, err = terminalIndex(master); err != nil {
			master.Close()
			tty.Close()
			dup.Close()
			fl.Stop()
			return nil, err
		}
	}
	yieldCPU()
	if cfg.Cgroup = process.MakeCgroup(spec.Name); cfg.Cgroup != "" {
		// The kernel starts the program in its cgroup, which names it
		// from its first instruction: recorded now, before it exists, a
		// daemon that dies before the handle below is written finds it
		// there (see Recover), and the program need not wait for it.
		if err = hypervisor.WriteHandleFile(launchHandle(spec, cfg.Cgroup, x)); err != nil {
			_ = process.Group{Cgroup: cfg.Cgroup}.Remove()
			err = fmt.Errorf("start %s: record the launch in the run directory: %w", o.Command[0], err)
		}
	}
	var p *process.Process
	yieldCPU()
	if err == nil {
		if p, err = process.Start(cfg); err != nil && cfg.Cgroup != "" {
			_ = hypervisor.RemoveHandleFile(spec.RunDir) // nothing was launched
		}
	}
	if master != nil {
		// The program holds its own; the daemon keeps only master.
		cfg.Terminal.Close()
		cfg.Inherit[0].Close()
		if err == nil {
			if err = restoreNonblock(master); err != nil {
				vmproc.Abandon(p, nil)
			}
		}
		if err != nil {
			master.Close()
		}
	}
	if err != nil {
		fl.Stop()
		return nil, err
	}
	h := handle(spec, p, x)
	yieldCPU()
	// Before anything else can go wrong: a daemon that dies now must find
	// this process again.
	if err := vmproc.Launch(p, h, fl); err != nil {
		if master != nil {
			master.Close()
		}
		return nil, fmt.Errorf("start %s: %w", o.Command[0], err)
	}
	var term *ttyconsole.Console
	if master != nil {
		term = ttyconsole.New(master, nil, spec.Console, setWindowSize)
	}
	return newInstance(spec.Name, p, h, fl, p.Group(), o, term), nil
}

// yieldCPU lets the goroutines waiting for a processor run before the next
// step of a launch. A launch is a run of system calls that seldom blocks,
// so Go's scheduler leaves it its processor from start to end; while many
// VMs start at once, the API's requests and the VMs' actors queued behind
// whole launches, each hand-off waiting about 3 ms (a start of 1,000 on
// two CPUs). Between the steps they run in turn, and a start of many takes
// about a tenth less time (make bench, scale scenario).
func yieldCPU() { runtime.Gosched() }

// terminalFiles makes the pseudo-terminal of console = pty: the daemon's
// side, the program's side, and the duplicate of the daemon's side the
// program inherits (see TerminalFD).
func terminalFiles() (master, tty, dup *os.File, err error) {
	if master, tty, err = openTerminal(); err != nil {
		return nil, nil, nil, err
	}
	if dup, err = inheritable(master); err != nil {
		master.Close()
		tty.Close()
		return nil, nil, nil, err
	}
	return master, tty, dup, nil
}

func handle(spec hypervisor.Spec, p *process.Process, ex extra) hypervisor.Handle {
	g := p.Group()
	h := launchHandle(spec, g.Cgroup, ex)
	h.PID, h.StartTime, h.PGID = p.PID(), p.StartTime(), g.PGID
	return h
}

// launchHandle is the handle of a launch whose process does not exist
// yet: no pid, only the cgroup it will start in.
func launchHandle(spec hypervisor.Spec, cgroup string, ex extra) hypervisor.Handle {
	x, _ := json.Marshal(ex)
	return hypervisor.Handle{
		Version: hypervisor.HandleVersion,
		Driver:  Name,
		Cgroup:  cgroup,
		RunDir:  spec.RunDir,
		Extra:   x,
	}
}

// groupOf returns the group a handle names. Handles written before the
// group was recorded lack it; their process was started as the leader of
// its own group all the same.
func groupOf(h hypervisor.Handle) process.Group {
	g := process.Group{PGID: h.PGID, LeaderStart: h.StartTime, Cgroup: h.Cgroup}
	if g.PGID == 0 {
		g.PGID = h.PID
	}
	return g
}

// Recover re-adopts a process started by an earlier daemon. When the
// process has exited meanwhile, what it left of its group is killed (and
// its cgroup removed) before Recover reports it gone, so that a relaunch
// never runs next to the remains of the last run.
func (d *Driver) Recover(ctx context.Context, spec hypervisor.Spec, h hypervisor.Handle) (hypervisor.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var x extra
	if err := vmproc.DecodeHandle(h, Name, &x); err != nil {
		return nil, err
	}
	o, err := options(spec)
	if err != nil {
		return nil, err
	}
	if x.Output == "" {
		x.Output = filepath.Join(h.RunDir, OutputFile)
	}
	g := groupOf(h)
	if h.PID == 0 && h.Cgroup != "" {
		// The daemon ended between the launch into the cgroup and the
		// handle that names its process: the program may run, not
		// known to anyone. It is ended, as a launch never finished.
		msg := g.EndLeftovers()
		if msg == "" {
			msg = "it never ran or has ended"
		}
		_ = hypervisor.RemoveHandleFile(h.RunDir)
		return nil, fmt.Errorf("%w: the launch the last daemon made in cgroup %s was never recorded; %s", hypervisor.ErrGone, h.Cgroup, msg)
	}
	p, fl, err := vmproc.Reattach(h, x.Output, spec.Output)
	if err != nil {
		// Only when the handle's pid is not in the group: a handle whose
		// start time is wrong must not kill the process it names.
		if errors.Is(err, hypervisor.ErrGone) && !g.Holds(h.PID) {
			if msg := g.EndLeftovers(); msg != "" {
				err = fmt.Errorf("%w; %s", err, msg)
			}
		}
		return nil, err
	}
	var term *ttyconsole.Console
	if x.TerminalFD > 0 {
		// What the program wrote while no daemon read its terminal
		// waits in it, and comes out now.
		master, err := takeTerminal(p, x.TerminalFD, x.TerminalIndex)
		if err != nil && spec.Output != nil {
			fmt.Fprintf(spec.Output, "the console cannot be had until the VM restarts: %v\n", err)
		}
		term = ttyconsole.New(master, err, spec.Console, setWindowSize)
	}
	return newInstance(spec.Name, p, h, fl, g, o, term), nil
}

// Instance is a running exec VM. Besides hypervisor.Instance it is a
// hypervisor.Pauser (SIGSTOP and SIGCONT) and a hypervisor.Consoler
// (console = pty).
type Instance struct {
	*vmproc.Instance
	term *ttyconsole.Console // nil without console = pty
	name string
}

func newInstance(name string, p *process.Process, h hypervisor.Handle, fl *process.Follower, g process.Group, o Options, term *ttyconsole.Console) *Instance {
	var afterExit func() string
	if term != nil {
		afterExit = term.Close
	}
	return &Instance{term: term, name: name, Instance: vmproc.New(vmproc.Config{
		Proc:       p,
		Handle:     h,
		Follower:   fl,
		StopSignal: o.StopSignal,
		Group:      &g,
		AfterExit:  afterExit,
		Classify: func(s process.Status, req vmproc.Requests) hypervisor.Exit {
			return classify(s, req, o)
		},
	})}
}

// Console connects to the program's terminal (console = pty). The
// connection is the only one: a new one ends the one before.
func (i *Instance) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	if i.term == nil {
		return nil, fmt.Errorf("%w: vm %s has no console: set console = pty in its exec section and restart it", hypervisor.ErrNotSupported, i.name)
	}
	c, err := i.term.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("exec: vm %s: %w", i.name, err)
	}
	return c, nil
}

// Pause freezes the VM's processes with SIGSTOP.
func (i *Instance) Pause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return i.Signal(syscall.SIGSTOP)
}

// Resume thaws the VM's processes with SIGCONT.
func (i *Instance) Resume(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return i.Signal(syscall.SIGCONT)
}

// classify maps how the process ended to an Exit: an exit code in
// PoweroffExitCodes is a poweroff, one in RebootExitCodes a reboot, any
// other a crash; signals and unobservable statuses are classified by
// vmproc.ClassifySignalled. o must have its defaults applied.
func classify(s process.Status, req vmproc.Requests, o Options) hypervisor.Exit {
	if e, ok := vmproc.ClassifySignalled(s, req, o.StopSignal); ok {
		return e
	}
	e := hypervisor.Exit{Code: s.Code}
	switch {
	case slices.Contains(o.PoweroffExitCodes, s.Code):
		e.Reason = hypervisor.ExitPoweroff
	case slices.Contains(o.RebootExitCodes, s.Code):
		e.Reason = hypervisor.ExitReboot
	default:
		e.Reason = hypervisor.ExitCrash
	}
	e.Detail = fmt.Sprintf("exit status %d", s.Code)
	return e
}

var (
	_ hypervisor.Driver   = (*Driver)(nil)
	_ hypervisor.Instance = (*Instance)(nil)
	_ hypervisor.Pauser   = (*Instance)(nil)
	_ hypervisor.Consoler = (*Instance)(nil)
)
