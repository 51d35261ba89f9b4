// Package qemu is the hypervisor driver for QEMU. It builds QEMU's command
// line from a Spec, runs QEMU as the daemon's direct child (never
// -daemonize), talks to it over QMP (package qmp), and classifies its exit
// from the SHUTDOWN event.
package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/cloudinit"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu/qmp"
)

// DriverName is the driver's name in configs and Handles.
const DriverName = "qemu"

// DefaultKillGrace is how long Kill waits for QEMU to quit before SIGKILL.
const DefaultKillGrace = 3 * time.Second

// Driver starts and re-adopts QEMU processes. The zero value is ready to
// use.
type Driver struct {
	// KillGrace is how long Kill waits after QMP quit before sending
	// SIGKILL; zero means DefaultKillGrace.
	KillGrace time.Duration
}

// New returns a QEMU driver with default settings.
func New() hypervisor.Driver { return &Driver{} }

// Name returns "qemu".
func (d *Driver) Name() string { return DriverName }

func (d *Driver) killGrace() time.Duration {
	if d.KillGrace > 0 {
		return d.KillGrace
	}
	return DefaultKillGrace
}

// resolveAccel turns "auto" into kvm or tcg.
func resolveAccel(accel string) string {
	if accel != "auto" {
		return accel
	}
	if KVMUsable() {
		return "kvm"
	}
	return "tcg"
}

// CommandLine returns the program and arguments Start would run for spec,
// without running anything or writing files (a ConfigFile shows up as its
// .generated path).
func CommandLine(spec hypervisor.Spec) (string, []string, error) {
	o, err := options(spec)
	if err != nil {
		return "", nil, err
	}
	if err := o.Validate(); err != nil {
		return "", nil, err
	}
	rc := ""
	if spec.ConfigFile != "" {
		rc = spec.ConfigFile + ".generated"
	}
	return o.Binary, buildArgs(spec, o, resolveAccel(o.Accel), rc), nil
}

// Version runs `binary --version` and returns the version it prints
// ("7.2.22"). A bare name is looked up in PATH.
func Version(ctx context.Context, binary string) (string, error) {
	if binary == "" {
		binary = DefaultBinary
	}
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu: %s --version: %w", binary, err)
	}
	const marker = "version "
	line, _, _ := strings.Cut(string(out), "\n")
	i := strings.Index(line, marker)
	if i < 0 {
		return "", fmt.Errorf("qemu: %s --version printed %q, not a QEMU version", binary, line)
	}
	v, _, _ := strings.Cut(line[i+len(marker):], " ")
	return v, nil
}

// Start launches QEMU for spec and returns once QMP is connected and the
// guest runs.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Instance, error) {
	return d.start(ctx, spec, nil)
}

// start launches QEMU; with incoming, it loads the guest's state from that
// file instead of booting.
func (d *Driver) start(ctx context.Context, spec hypervisor.Spec, incoming *os.File) (hypervisor.Instance, error) {
	if spec.Name == "" || spec.RunDir == "" {
		return nil, fmt.Errorf("%w: Spec needs a Name and a RunDir", ErrInvalidOptions)
	}
	o, err := options(spec)
	if err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := checkSocketPaths(spec.RunDir); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: binary %q not found: %w (install qemu-system-x86 or set qemu.binary)", o.Binary, err)
	}
	if err := checkBinary(bin); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.RunDir, 0o750); err != nil {
		return nil, fmt.Errorf("qemu: run directory: %w", err)
	}
	p := pathsFor(spec.RunDir)
	if err := checkPidfile(p.PID); err != nil {
		return nil, err
	}
	// Stale sockets and pidfile from an earlier run would make us talk to
	// nothing or read the wrong pid.
	for _, f := range []string{p.QMP, p.QMPAlt, p.Serial, p.VNC, p.QGA, p.PID} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("qemu: removing stale %s: %w", f, err)
		}
	}
	if o.CloudInit != nil {
		// Built before every start, so that edited inputs reach the
		// next boot; an unchanged seed is kept as it is.
		seed, err := cloudinit.Build(spec.Name, *o.CloudInit)
		if err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
		if _, err := cloudinit.Ensure(p.Seed, seed); err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
	}
	accel := resolveAccel(o.Accel)
	readConfig := ""
	if spec.ConfigFile != "" {
		readConfig, err = generateConfig(spec, o, accel)
		if err != nil {
			return nil, err
		}
	}
	args := buildArgs(spec, o, accel, readConfig)
	if incoming != nil {
		// The state arrives through QMP once QEMU listens (see restore).
		args = append(args, "-incoming", "defer")
	}

	var outStart int64
	if fi, err := os.Stat(p.Output); err == nil {
		outStart = fi.Size()
	}
	follower, err := startCaptures(spec, p, o.Serial, true)
	if err != nil {
		return nil, err
	}
	stopFollower := follower.stop

	proc, err := process.Start(process.Config{Path: bin, Args: args, Dir: spec.RunDir, OutputPath: p.Output, Gated: true})
	if err != nil {
		stopFollower()
		return nil, fmt.Errorf("qemu: starting %s: %w", bin, err)
	}
	fail := func(err error) (hypervisor.Instance, error) {
		proc.Signal(syscall.SIGKILL)
		select {
		case <-proc.Done():
		case <-time.After(10 * time.Second):
		}
		stopFollower()
		return nil, err
	}

	inst := newInstance(d, spec, proc, p, follower)
	inst.accel = accel
	// A daemon that dies from here on finds this QEMU through the file
	// instead of starting a second one.
	if err := hypervisor.WriteHandleFile(inst.Handle()); err != nil {
		return fail(fmt.Errorf("qemu: starting %s: record its handle in the run directory: %w", bin, err))
	}
	if err := proc.Release(); err != nil {
		return fail(fmt.Errorf("qemu: starting %s: %w", bin, err))
	}
	c, sub, err := connect(ctx, p.QMP, proc)
	if err != nil {
		if errors.Is(err, errExited) {
			return fail(startError(proc, p.Output, outStart))
		}
		return fail(fmt.Errorf("qemu: connecting to QMP: %w%s", err, tailNote(p.Output, outStart)))
	}
	if incoming != nil {
		if err := restore(ctx, c, proc, incoming); err != nil {
			c.Close()
			if errors.Is(err, errExited) {
				return fail(restoreError(proc, p.Output, outStart))
			}
			return fail(fmt.Errorf("qemu: restoring the saved state: %w%s", err, tailNote(p.Output, outStart)))
		}
	}
	if err := waitRunning(ctx, c, proc); err != nil {
		c.Close()
		if errors.Is(err, errExited) {
			return fail(startError(proc, p.Output, outStart))
		}
		return fail(fmt.Errorf("qemu: waiting for the guest to run: %w", err))
	}
	if o.VNCPassword != "" {
		pw := map[string]string{"password": o.VNCPassword}
		if err := c.Run(ctx, "change-vnc-password", pw, nil); err != nil {
			c.Close()
			return fail(fmt.Errorf("qemu: setting the VNC password: %w", err))
		}
	}
	inst.attachQMP(c, sub)
	go inst.run()
	return inst, nil
}

// Recover re-adopts a QEMU started earlier, by pid and start time, and
// reconnects to its QMP socket.
func (d *Driver) Recover(ctx context.Context, spec hypervisor.Spec, h hypervisor.Handle) (hypervisor.Instance, error) {
	if h.Driver != DriverName {
		return nil, fmt.Errorf("qemu: handle belongs to driver %q", h.Driver)
	}
	if h.Version != hypervisor.HandleVersion {
		return nil, fmt.Errorf("qemu: handle version %d, this daemon reads version %d", h.Version, hypervisor.HandleVersion)
	}
	sock := h.Sockets["qmp"]
	if sock == "" {
		return nil, fmt.Errorf("qemu: handle has no qmp socket")
	}
	proc, err := process.Attach(h.PID, h.StartTime)
	if err != nil {
		return nil, fmt.Errorf("qemu: re-adopting pid %d: %w", h.PID, err)
	}
	if spec.RunDir == "" {
		spec.RunDir = h.RunDir
	}
	p := pathsFor(h.RunDir)
	p.QMP = sock
	p.QMPAlt = h.Sockets["qmp-alt"]
	if s := h.Sockets["serial"]; s != "" {
		p.Serial = s
	}
	var extra handleExtra
	if len(h.Extra) > 0 {
		// Unknown or damaged private state only costs the defaults.
		if err := json.Unmarshal(h.Extra, &extra); err == nil && extra.Output != "" {
			p.Output = extra.Output
		}
	}
	// The console log exists when the VM was started with a serial port.
	follower, err := startCaptures(spec, p, h.Sockets["serial"] != "", false)
	if err != nil {
		return nil, err
	}
	inst := newInstance(d, spec, proc, p, follower)
	inst.sockets = h.Sockets
	inst.accel = extra.Accel
	c, sub, err := connectAny(ctx, []string{p.QMP, p.QMPAlt}, proc)
	if err != nil {
		follower.stop()
		if errors.Is(err, errExited) {
			return nil, fmt.Errorf("qemu: pid %d exited while reconnecting: %w", h.PID, hypervisor.ErrGone)
		}
		return nil, fmt.Errorf("qemu: reconnecting to QMP at %s: %w", sock, err)
	}
	inst.attachQMP(c, sub)
	go inst.run()
	return inst, nil
}

var errExited = errors.New("qemu exited")

// connectAny connects to whichever of the QMP sockets answers first. A
// socket whose single client slot is taken (an earlier connection still
// open) accepts but stays silent, so the sockets are tried at once.
func connectAny(ctx context.Context, socks []string, proc *process.Process) (*qmp.Client, *qmp.Subscription, error) {
	var live []string
	for _, s := range socks {
		if s != "" {
			live = append(live, s)
		}
	}
	if len(live) == 1 {
		return connect(ctx, live[0], proc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		c   *qmp.Client
		sub *qmp.Subscription
		err error
	}
	ch := make(chan res, len(live))
	for _, s := range live {
		go func() {
			c, sub, err := connect(ctx, s, proc)
			ch <- res{c, sub, err}
		}()
	}
	var win res
	var errs []error
	for range live {
		r := <-ch
		switch {
		case r.err == nil && win.c == nil:
			win = r
			cancel()
		case r.err == nil:
			r.c.Close()
		default:
			errs = append(errs, r.err)
		}
	}
	if win.c != nil {
		return win.c, win.sub, nil
	}
	for _, e := range errs {
		if errors.Is(e, errExited) {
			return nil, nil, e
		}
	}
	return nil, nil, errors.Join(errs...)
}

// connect dials the QMP socket until it answers, the process exits, or
// ctx ends. It subscribes to events before the first one can arrive.
func connect(ctx context.Context, sock string, proc *process.Process) (*qmp.Client, *qmp.Subscription, error) {
	// Poll briskly: QEMU creates the socket 20-40 ms after exec, and a
	// long backoff step would add to every start.
	delay := time.Millisecond
	for {
		select {
		case <-proc.Done():
			return nil, nil, errExited
		default:
		}
		sub := qmp.NewSubscription(eventBuffer)
		c, err := qmp.Dial(ctx, sock, qmp.WithSubscription(sub))
		if err == nil {
			return c, sub, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.Done():
			t.Stop()
			return nil, nil, errExited
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

// waitRunning waits until query-status says running.
func waitRunning(ctx context.Context, c *qmp.Client, proc *process.Process) error {
	for {
		var st struct {
			Status string `json:"status"`
		}
		err := c.Run(ctx, "query-status", nil, &st)
		if err != nil {
			if errors.Is(err, qmp.ErrClosed) {
				select {
				case <-proc.Done():
					return errExited
				case <-time.After(5 * time.Second):
				}
			}
			return err
		}
		if st.Status == "running" {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("status is %q: %w", st.Status, ctx.Err())
		case <-proc.Done():
			t.Stop()
			return errExited
		case <-t.C:
		}
	}
}

// startError describes QEMU exiting during start, quoting its output.
func startError(proc *process.Process, output string, from int64) error {
	how := "exited"
	if st, ok := proc.Status(); ok && st.Known {
		if st.Signal != 0 {
			how = "was killed by " + signalName(st.Signal)
		} else {
			how = fmt.Sprintf("exited with status %d", st.Code)
		}
	}
	msg := tail(output, from)
	if msg == "" {
		return fmt.Errorf("qemu %s during start without printing anything", how)
	}
	return fmt.Errorf("qemu %s during start: %s", how, msg)
}

func tailNote(output string, from int64) string {
	if s := tail(output, from); s != "" {
		return "; qemu printed: " + s
	}
	return ""
}

// tail returns the last few lines QEMU wrote to output since offset from,
// joined into one line.
func tail(output string, from int64) string {
	f, err := os.Open(output)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 4096
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := from
	if fi.Size()-start > max {
		start = fi.Size() - max
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?")))), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " / ")
}
