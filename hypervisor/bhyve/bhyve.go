// Package bhyve is the hypervisor driver for FreeBSD's bhyve.
//
// Like vmstated, it writes <configfile>.generated (the user's bhyve config
// with the settings vmstated generates, which win), starts
// "bhyve -k <generated> <name>", and reads the guest's fate from bhyve's
// exit status. SIGTERM makes bhyve press the guest's ACPI power button.
// After every exit, and on a forced stop, "bhyvectl --destroy" frees the
// VM's kernel state so that the name can be used again.
//
// The binaries are configurable, so the driver also runs (in tests) against
// stand-ins on hosts without bhyve.
package bhyve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/internal/ttyconsole"
	"github.com/vmstated/vmstated/hypervisor/internal/vmproc"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/trust"
)

// Name is the driver's name in configs.
const Name = "bhyve"

// OutputFile is the file under RunDir that captures bhyve's stdout and
// stderr.
const OutputFile = "output.log"

// ConfigFile is the name under RunDir of the config written (as
// ConfigFile+".generated") when the VM has no config file of its own.
const ConfigFile = "bhyve.conf"

// Default binary paths.
const (
	DefaultBinary   = "/usr/sbin/bhyve"
	DefaultBhyvectl = "/usr/sbin/bhyvectl"
)

// bhyvectlTimeout bounds a bhyvectl run.
const bhyvectlTimeout = 30 * time.Second

// Options are the bhyve driver's settings (Spec.Options is *Options). The
// guest's size and firmware come from the Spec.
type Options struct {
	// Binary is the bhyve program; empty means DefaultBinary.
	Binary string
	// Bhyvectl is the bhyvectl program; empty means DefaultBhyvectl.
	Bhyvectl string
	// GenerateACPITables sets acpi_tables (bhyve -A); most guests need it
	// on. Nil leaves whatever the user's config file says: like
	// vmstated(8), only settings the VM's config names are generated.
	GenerateACPITables *bool
	// VMExitOnHalt sets x86.vmexit_on_hlt (bhyve -H), so that an idle
	// guest does not spin a host CPU. Nil leaves the config file's value.
	VMExitOnHalt *bool
	// Console is ConsoleNMDM to put the guest's COM1 on the VM's
	// null-modem pair (lpc.com1.path, see NMDMPair), whose other side the
	// daemon holds: the guest's output goes to Spec.Console and the
	// instance is a hypervisor.Consoler. Empty leaves COM1 to the config
	// file.
	Console string
}

// Bool returns a pointer to b, for the optional switches of Options.
func Bool(b bool) *bool { return &b }

// DefaultOptions are used when Spec.Options is nil: both switches on.
func DefaultOptions() Options {
	return Options{Binary: DefaultBinary, Bhyvectl: DefaultBhyvectl, GenerateACPITables: Bool(true), VMExitOnHalt: Bool(true)}
}

// ErrBadSpec is wrapped by errors about an unusable Spec or Options.
var ErrBadSpec = errors.New("bad bhyve spec")

func options(spec hypervisor.Spec) (Options, error) {
	var o Options
	switch v := spec.Options.(type) {
	case *Options:
		if v == nil {
			o = DefaultOptions()
		} else {
			o = *v
		}
	case Options:
		o = v
	case nil:
		o = DefaultOptions()
	default:
		return o, fmt.Errorf("%w: Spec.Options is %T, want *bhyve.Options", ErrBadSpec, spec.Options)
	}
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.Bhyvectl == "" {
		o.Bhyvectl = DefaultBhyvectl
	}
	if o.Console != "" && o.Console != ConsoleNMDM {
		return o, fmt.Errorf("%w: console %q: want %q or none", ErrBadSpec, o.Console, ConsoleNMDM)
	}
	return o, nil
}

// vmName matches names bhyve accepts for /dev/vmm/NAME.
var vmName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-]*$`)

// Settings returns the settings vmstated generates for spec, in the order
// they are written: acpi_tables, x86.vmexit_on_hlt, memory.size, cpus,
// sockets, cores, threads and lpc.bootrom (the last six only when set),
// and lpc.com1.path with console = nmdm.
func Settings(spec hypervisor.Spec, o Options) []hypervisor.Setting {
	var s []hypervisor.Setting
	if o.GenerateACPITables != nil {
		s = append(s, hypervisor.Setting{Key: "acpi_tables", Value: strconv.FormatBool(*o.GenerateACPITables)})
	}
	if o.VMExitOnHalt != nil {
		s = append(s, hypervisor.Setting{Key: "x86.vmexit_on_hlt", Value: strconv.FormatBool(*o.VMExitOnHalt)})
	}
	if spec.MemoryMB > 0 {
		s = append(s, hypervisor.Setting{Key: "memory.size", Value: strconv.FormatInt(spec.MemoryMB, 10) + "M"})
	}
	for _, kv := range []struct {
		key string
		n   int
	}{{"cpus", spec.CPUs}, {"sockets", spec.Sockets}, {"cores", spec.Cores}, {"threads", spec.Threads}} {
		if kv.n > 0 {
			s = append(s, hypervisor.Setting{Key: kv.key, Value: strconv.Itoa(kv.n)})
		}
	}
	if spec.BootROM != "" {
		s = append(s, hypervisor.Setting{Key: "lpc.bootrom", Value: spec.BootROM})
	}
	if o.Console == ConsoleNMDM {
		s = append(s, consoleSetting(spec.Name))
	}
	return s
}

// WriteConfig writes the config bhyve is started with and returns its
// path: Spec.ConfigFile+".generated" when the VM has a config file, else
// RunDir/bhyve.conf.generated holding only the generated settings.
func WriteConfig(spec hypervisor.Spec, o Options) (string, error) {
	var user []byte
	base := spec.ConfigFile
	if base != "" {
		b, err := os.ReadFile(base)
		if err != nil {
			return "", fmt.Errorf("read the VM's bhyve config file: %w", err)
		}
		user = b
	} else {
		base = filepath.Join(spec.RunDir, ConfigFile)
	}
	content, err := hypervisor.CombineBhyveConfig(user, Settings(spec, o))
	if err != nil {
		if spec.ConfigFile != "" {
			return "", fmt.Errorf("bhyve config file %s: %w", spec.ConfigFile, err)
		}
		return "", err
	}
	return hypervisor.WriteGenerated(base, content)
}

// Driver starts bhyve VMs. The zero value is ready to use and holds no
// state: any Driver value can Recover what another started.
type Driver struct{}

// New returns a Driver.
func New() *Driver { return &Driver{} }

// Name returns "bhyve".
func (*Driver) Name() string { return Name }

// extra is the driver-private part of the Handle.
type extra struct {
	Name   string `json:"name"`
	Config string `json:"config"`
	Output string `json:"output"`
	// Console is the daemon's side of the VM's null-modem pair
	// (console = nmdm), empty without one.
	Console string `json:"console,omitempty"`
}

// Start writes the generated config and starts bhyve. bhyve counts as
// running once its process has started.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := options(spec)
	if err != nil {
		return nil, err
	}
	if !vmName.MatchString(spec.Name) {
		return nil, fmt.Errorf("%w: VM name %q: bhyve needs letters, digits, '_', '.' and '-', not starting with '.' or '-'", ErrBadSpec, spec.Name)
	}
	if spec.RunDir == "" {
		return nil, fmt.Errorf("%w: Spec.RunDir is empty", ErrBadSpec)
	}
	// Checked again at each launch: the config's load is not enough.
	for _, prog := range []string{o.Binary, o.Bhyvectl} {
		if err := trust.CheckProgram(prog); err != nil {
			return nil, fmt.Errorf("%w: program refused: %w", ErrBadSpec, err)
		}
	}
	if err := os.MkdirAll(spec.RunDir, 0o750); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	conf, err := WriteConfig(spec, o)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(spec.RunDir, OutputFile)
	// Nothing writes the capture yet: emptied if copied to its end.
	_ = process.TruncateCopied(out)
	fl, err := process.Follow(context.Background(), out, spec.Output)
	if err != nil {
		return nil, err
	}
	ex := extra{Name: spec.Name, Config: conf, Output: out}
	var cons *ttyconsole.Console
	if o.Console == ConsoleNMDM {
		// Opened before bhyve opens its side: nothing the guest writes
		// from its first byte on is missed.
		_, ex.Console = NMDMPair(spec.Name)
		if cons, err = openConsole(ex.Console, spec.Console); err != nil {
			fl.Stop()
			return nil, err
		}
	}
	p, err := process.Start(process.Config{Path: o.Binary, Args: []string{"-k", conf, spec.Name}, Dir: spec.RunDir, OutputPath: out, Gated: true})
	if err != nil {
		fl.Stop()
		closeConsole(cons)
		return nil, fmt.Errorf("start bhyve (set the bhyve binary path if it is not %s): %w", o.Binary, err)
	}
	x, _ := json.Marshal(ex)
	h := hypervisor.Handle{
		Version:   hypervisor.HandleVersion,
		Driver:    Name,
		PID:       p.PID(),
		StartTime: p.StartTime(),
		RunDir:    spec.RunDir,
		Extra:     x,
	}
	// A daemon that dies from here on finds this process through the file.
	if err := vmproc.Launch(p, h, fl); err != nil {
		closeConsole(cons)
		return nil, fmt.Errorf("start bhyve: %w", err)
	}
	return newInstance(p, h, fl, spec.Name, o, spec.Output, cons), nil
}

// Recover re-adopts a bhyve process started by an earlier daemon. It is
// not this daemon's child: its exit status comes from the host (see
// process.Attach), and where the host cannot report it the exit is
// classified from what was asked of it (Exit.StatusUnknown).
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
	if x.Name == "" {
		x.Name = spec.Name
	}
	if x.Output == "" {
		x.Output = filepath.Join(h.RunDir, OutputFile)
	}
	p, fl, err := vmproc.Reattach(h, x.Output, spec.Output)
	if err != nil {
		return nil, err
	}
	var cons *ttyconsole.Console
	if x.Console != "" {
		// bhyve holds its side, so the pair is still there: what the
		// guest wrote while no daemon held this side is what the pair
		// kept of it.
		if cons, err = openConsole(x.Console, spec.Console); err != nil {
			if spec.Output != nil {
				fmt.Fprintf(spec.Output, "the console cannot be had until the VM restarts: %v\n", err)
			}
			cons = ttyconsole.New(nil, err, nil, nil)
		}
	}
	return newInstance(p, h, fl, x.Name, o, spec.Output, cons), nil
}

// Instance is a running bhyve VM. Besides hypervisor.Instance it is a
// hypervisor.Resetter and hypervisor.NMIer (through bhyvectl), and a
// hypervisor.Consoler (console = nmdm).
type Instance struct {
	*vmproc.Instance
	name    string
	opts    Options
	out     io.Writer           // the VM's log, for what bhyvectl says; may be nil
	console *ttyconsole.Console // nil without console = nmdm
}

func newInstance(p *process.Process, h hypervisor.Handle, fl *process.Follower, name string, o Options, out io.Writer, cons *ttyconsole.Console) *Instance {
	i := &Instance{name: name, opts: o, out: out, console: cons}
	destroy := func() string {
		if err := i.bhyvectl(context.Background(), "--destroy"); err != nil {
			return err.Error()
		}
		return ""
	}
	afterExit := func() string {
		closeConsole(cons)
		return destroy()
	}
	i.Instance = vmproc.New(vmproc.Config{
		Proc:       p,
		Handle:     h,
		Follower:   fl,
		StopSignal: syscall.SIGTERM,
		Classify:   classify,
		AfterExit:  afterExit,
		OnKill:     func() { destroy() },
	})
	return i
}

// bhyvectl runs "bhyvectl args... --vm=NAME".
func (i *Instance) bhyvectl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, bhyvectlTimeout)
	defer cancel()
	argv := append(append([]string(nil), args...), "--vm="+i.name)
	cmd := osexec.CommandContext(ctx, i.opts.Bhyvectl, argv...)
	cmd.Env = process.DefaultEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg != "" {
			return fmt.Errorf("%s %s: %w: %s", i.opts.Bhyvectl, strings.Join(argv, " "), err, msg)
		}
		return fmt.Errorf("%s %s: %w", i.opts.Bhyvectl, strings.Join(argv, " "), err)
	}
	// What it says on success goes to the VM's log like bhyve's own
	// output (a failure carries it in the error).
	if i.out != nil {
		what := filepath.Base(i.opts.Bhyvectl) + " " + strings.Join(argv, " ")
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(i.out, "%s: %s\n", what, line)
			}
		}
	}
	return nil
}

// Reset hard-resets the guest (bhyvectl --force-reset).
func (i *Instance) Reset(ctx context.Context) error {
	if _, exited := i.Exit(); exited {
		return fmt.Errorf("reset %s: %w", i.name, hypervisor.ErrExited)
	}
	return i.bhyvectl(ctx, "--force-reset")
}

// NMI injects a non-maskable interrupt (bhyvectl --inject-nmi).
func (i *Instance) NMI(ctx context.Context) error {
	if _, exited := i.Exit(); exited {
		return fmt.Errorf("nmi %s: %w", i.name, hypervisor.ErrExited)
	}
	return i.bhyvectl(ctx, "--inject-nmi")
}

// exitMeaning is what bhyve's exit statuses say about the guest.
var exitMeaning = map[int]struct {
	reason hypervisor.ExitReason
	what   string
}{
	0: {hypervisor.ExitReboot, "reboot"},
	1: {hypervisor.ExitPoweroff, "powered off"},
	2: {hypervisor.ExitPoweroff, "halted"},
	3: {hypervisor.ExitCrash, "triple fault"},
	4: {hypervisor.ExitCrash, "error"},
}

// classify maps bhyve's exit: status 0 reboot, 1 poweroff, 2 halt
// (poweroff), 3 triple fault and 4 error (crash); other statuses are
// crashes. Signals and unobservable statuses are classified alike for all
// single-process drivers (vmproc.ClassifySignalled).
func classify(s process.Status, req vmproc.Requests) hypervisor.Exit {
	if e, ok := vmproc.ClassifySignalled(s, req, syscall.SIGTERM); ok {
		return e
	}
	e := hypervisor.Exit{Code: s.Code, Reason: hypervisor.ExitCrash}
	m, ok := exitMeaning[s.Code]
	if ok {
		e.Reason = m.reason
		e.Detail = fmt.Sprintf("bhyve exit %d: %s", s.Code, m.what)
	} else {
		e.Detail = fmt.Sprintf("bhyve exit %d: unexpected status", s.Code)
	}
	return e
}

var (
	_ hypervisor.Driver   = (*Driver)(nil)
	_ hypervisor.Instance = (*Instance)(nil)
	_ hypervisor.Resetter = (*Instance)(nil)
	_ hypervisor.NMIer    = (*Instance)(nil)
)
