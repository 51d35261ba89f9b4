package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu/qmp"
)

// eventBuffer is the room for QMP events between the reader and the
// instance's event goroutine. Events are rare (a handful per lifecycle
// change), so it never fills in practice; if it did, the lost events
// would be counted by the subscription.
const eventBuffer = 256

// shutdownEvent is the data of QMP's SHUTDOWN event.
type shutdownEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// handleExtra is the driver-private part of a Handle.
type handleExtra struct {
	Output string `json:"output,omitempty"`
	// Accel is the accelerator the VM was started with (auto resolved).
	Accel string `json:"accel,omitempty"`
}

// instance is one QEMU process.
type instance struct {
	drv      *Driver
	spec     hypervisor.Spec
	proc     *process.Process
	paths    runPaths
	follower captures
	sockets  map[string]string
	accel    string

	mu       sync.Mutex
	qmp      *qmp.Client
	evDone   chan struct{} // closed when the current event goroutine ends
	shutdown *shutdownEvent
	// subs are the event subscriptions of every QMP connection so far;
	// what they dropped decides how far a missing SHUTDOWN means a crash.
	subs     []*qmp.Subscription
	panicked bool
	killed   bool
	// agent lets one guest-agent connection at a time use the socket,
	// which serves one client.
	agent agentSlot
	exit  hypervisor.Exit

	done chan struct{}
}

func newInstance(d *Driver, spec hypervisor.Spec, proc *process.Process, p runPaths, f captures) *instance {
	o, _ := options(spec)
	sockets := map[string]string{"qmp": p.QMP, "qmp-alt": p.QMPAlt}
	if o.Serial {
		sockets["serial"] = p.Serial
	}
	if o.VNC == "unix" || o.VNC == "auto" {
		sockets["vnc"] = p.VNC
	}
	if o.GuestAgent {
		sockets["qga"] = p.QGA
	}
	return &instance{drv: d, spec: spec, proc: proc, paths: p, follower: f, sockets: sockets, agent: make(agentSlot, 1), done: make(chan struct{})}
}

// attachQMP makes c the instance's QMP connection and starts consuming
// its events.
func (i *instance) attachQMP(c *qmp.Client, sub *qmp.Subscription) {
	evDone := make(chan struct{})
	i.mu.Lock()
	i.qmp = c
	i.evDone = evDone
	i.subs = append(i.subs, sub)
	i.mu.Unlock()
	go func() {
		defer close(evDone)
		for e := range sub.Events() {
			i.record(e)
		}
	}()
}

// record keeps what the exit classification needs.
func (i *instance) record(e qmp.Event) {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch e.Name {
	case "SHUTDOWN":
		var s shutdownEvent
		if len(e.Data) > 0 {
			json.Unmarshal(e.Data, &s)
		}
		if i.shutdown == nil {
			i.shutdown = &s
		}
	case "GUEST_PANICKED":
		i.panicked = true
	}
}

// run waits for the process to exit. The QMP connection closing is a
// second exit signal: if the process still lives afterwards, run
// reconnects.
func (i *instance) run() {
	for {
		i.mu.Lock()
		c := i.qmp
		i.mu.Unlock()
		var qmpDone <-chan struct{}
		if c != nil {
			qmpDone = c.Done()
		}
		select {
		case <-i.proc.Done():
			i.finish()
			return
		case <-qmpDone:
			// QEMU closes QMP when it exits; give the exit a moment to
			// be seen before deciding the connection merely broke.
			select {
			case <-i.proc.Done():
				i.finish()
				return
			case <-time.After(2 * time.Second):
			}
			i.mu.Lock()
			i.qmp = nil
			i.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-i.proc.Done():
				case <-i.done:
				}
				cancel()
			}()
			nc, sub, err := connectAny(ctx, []string{i.paths.QMP, i.paths.QMPAlt}, i.proc)
			cancel()
			if err != nil {
				<-i.proc.Done()
				i.finish()
				return
			}
			i.attachQMP(nc, sub)
		}
	}
}

// finish classifies the exit once the process is gone.
func (i *instance) finish() {
	i.mu.Lock()
	c, evDone := i.qmp, i.evDone
	i.mu.Unlock()
	if c != nil {
		// The socket closes with the process; the events read before
		// that (SHUTDOWN) are delivered before the channel closes.
		select {
		case <-c.Done():
		case <-time.After(2 * time.Second):
			c.Close()
		}
		<-evDone
	}
	st, _ := i.proc.Status()
	i.mu.Lock()
	var dropped uint64
	for _, sub := range i.subs {
		dropped += sub.Dropped()
	}
	if dropped > 0 && i.spec.Output != nil {
		fmt.Fprintf(i.spec.Output, "%d QMP event(s) were dropped: the daemon read them too slowly\n", dropped)
	}
	i.exit = classify(i.shutdown, i.panicked, i.killed, dropped, st)
	i.exit.Time = time.Now()
	i.mu.Unlock()
	i.follower.stop()
	close(i.done)
}

// classify turns what was seen into an Exit. dropped counts the QMP events
// lost on the way: with some lost, a missing SHUTDOWN proves nothing, and
// a clean exit (status 0, which QEMU gives only after a shutdown) is taken
// for the guest's poweroff rather than a crash: restarting a guest that
// shut itself down is the worse mistake.
func classify(sd *shutdownEvent, panicked, killed bool, dropped uint64, st process.Status) hypervisor.Exit {
	e := hypervisor.Exit{Code: -1}
	if st.Known {
		e.Code = st.Code
	}
	if st.Signal != 0 {
		e.Signal = signalName(st.Signal)
	}
	switch {
	case panicked:
		e.Reason, e.Detail = hypervisor.ExitCrash, "guest-panicked"
	case sd != nil:
		e.Detail = sd.Reason
		switch sd.Reason {
		case "guest-shutdown":
			e.Reason = hypervisor.ExitPoweroff
		case "guest-reset", "host-qmp-system-reset":
			// QEMU runs with -no-reboot, so a reset from either side ends
			// the process; the supervisor's reboot path starts it again.
			e.Reason = hypervisor.ExitReboot
		case "host-qmp-quit", "host-signal", "host-ui":
			e.Reason = hypervisor.ExitKilled
		default: // guest-panic, host-error, subsystem-reset, ...
			e.Reason = hypervisor.ExitCrash
		}
	case killed:
		e.Reason, e.Detail = hypervisor.ExitKilled, "no SHUTDOWN event after a forced stop"
	case dropped > 0 && st.Known && st.Code == 0:
		e.Reason = hypervisor.ExitPoweroff
		e.Detail = fmt.Sprintf("exit status 0 and no SHUTDOWN event seen, but %d QMP event(s) were dropped", dropped)
	default:
		e.Reason, e.Detail = hypervisor.ExitCrash, "exited without a SHUTDOWN event"
	}
	return e
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// Handle returns what Recover needs.
func (i *instance) Handle() hypervisor.Handle {
	extra, _ := json.Marshal(handleExtra{Output: i.paths.Output, Accel: i.accel})
	sockets := make(map[string]string, len(i.sockets))
	for k, v := range i.sockets {
		sockets[k] = v
	}
	return hypervisor.Handle{
		Version:   hypervisor.HandleVersion,
		Driver:    DriverName,
		PID:       i.proc.PID(),
		StartTime: i.proc.StartTime(),
		RunDir:    i.spec.RunDir,
		Sockets:   sockets,
		Extra:     extra,
	}
}

func (i *instance) Done() <-chan struct{} { return i.done }

func (i *instance) Exit() (hypervisor.Exit, bool) {
	select {
	case <-i.done:
		i.mu.Lock()
		defer i.mu.Unlock()
		return i.exit, true
	default:
		return hypervisor.Exit{}, false
	}
}

// client returns the live QMP connection.
func (i *instance) client() (*qmp.Client, error) {
	select {
	case <-i.done:
		return nil, hypervisor.ErrExited
	default:
	}
	i.mu.Lock()
	c := i.qmp
	i.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("qemu: QMP is not connected (reconnecting)")
	}
	return c, nil
}

// command runs a QMP command, turning a connection lost to the process
// exiting into ErrExited.
func (i *instance) command(ctx context.Context, cmd string, args, result any) error {
	c, err := i.client()
	if err != nil {
		return err
	}
	err = c.Run(ctx, cmd, args, result)
	if err != nil && errors.Is(err, qmp.ErrClosed) {
		// QEMU closes the socket as it exits, a moment before the exit
		// itself is seen: wait for that moment, so that the caller learns
		// the VM is gone rather than that QMP failed.
		t := time.NewTimer(closedExitWait)
		defer t.Stop()
		select {
		case <-i.proc.Done():
			return fmt.Errorf("qemu: %s: %w", cmd, hypervisor.ErrExited)
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return err
}

// closedExitWait bounds the wait for QEMU's exit after its QMP socket
// closed under a command.
const closedExitWait = 2 * time.Second

// Shutdown presses the ACPI power button, or, with stop method agent,
// asks the guest agent first and presses the button only when the agent
// does not take the request.
func (i *instance) Shutdown(ctx context.Context) error {
	if o, _ := options(i.spec); o.StopMethod == StopAgent && i.HasGuestAgent() {
		// The agent gets half the time there is, so that the button
		// still can be pressed when it does not answer.
		actx, cancel := context.WithCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		}
		err := i.agentShutdown(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if i.spec.Output != nil {
			fmt.Fprintf(i.spec.Output, "guest agent shutdown: %v; pressing the ACPI power button instead\n", err)
		}
	}
	return i.command(ctx, "system_powerdown", nil, nil)
}

// Kill asks QEMU to quit and, if it has not exited after the grace
// period, sends SIGKILL. It returns once the exit is final.
func (i *instance) Kill() error {
	select {
	case <-i.done:
		return nil
	default:
	}
	i.mu.Lock()
	i.killed = true
	c := i.qmp
	i.mu.Unlock()
	if c != nil {
		// One grace period covers both the quit command (a hung QEMU
		// never answers) and the exit that follows it.
		ctx, cancel := context.WithTimeout(context.Background(), i.drv.killGrace())
		c.Run(ctx, "quit", nil, nil) // the reply may be lost as QEMU exits
		select {
		case <-i.done:
			cancel()
			return nil
		case <-ctx.Done():
		}
		cancel()
	}
	if err := i.proc.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("qemu: SIGKILL to pid %d: %w", i.proc.PID(), err)
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-i.done:
		return nil
	case <-t.C:
		return fmt.Errorf("qemu: pid %d has not exited 30 s after SIGKILL", i.proc.PID())
	}
}

// Pause freezes the guest's CPUs.
func (i *instance) Pause(ctx context.Context) error { return i.command(ctx, "stop", nil, nil) }

// Resume thaws them.
func (i *instance) Resume(ctx context.Context) error { return i.command(ctx, "cont", nil, nil) }

// Reset presses the reset button. QEMU runs with -no-reboot, so the
// reset ends the process with an Exit of reason reboot (detail
// "host-qmp-system-reset"), and the supervisor's reboot path starts the VM
// afresh, which is what a hard reset amounts to.
func (i *instance) Reset(ctx context.Context) error { return i.command(ctx, "system_reset", nil, nil) }

// NMI injects a non-maskable interrupt.
func (i *instance) NMI(ctx context.Context) error { return i.command(ctx, "inject-nmi", nil, nil) }

// maxScreendump bounds a screendump read back from QEMU.
const maxScreendump = 256 << 20

// Screenshot captures the display as PNG when QEMU can write it (7.1 and
// later), else as PPM. The daemon creates the file in the run directory
// and hands QEMU its descriptor (add-fd, /dev/fdset/N): a QEMU that runs
// as another user needs no access to the run directory, and nothing QEMU
// could do to a name there changes what the daemon reads.
func (i *instance) Screenshot(ctx context.Context, w io.Writer) (string, error) {
	c, err := i.client()
	if err != nil {
		return "", err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	path := filepath.Join(i.spec.RunDir, "screendump-"+hex.EncodeToString(rnd[:]))
	// QEMU opens the fd set write-only, and takes only a descriptor of
	// that access mode; the daemon reads through one of its own.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("qemu: screendump file: %w", err)
	}
	defer f.Close()
	r, err := os.Open(path)
	os.Remove(path) // the descriptors are all that is needed
	if err != nil {
		return "", fmt.Errorf("qemu: screendump file: %w", err)
	}
	defer r.Close()
	var added struct {
		FdsetID int `json:"fdset-id"`
	}
	ret, err := c.ExecuteWithFile(ctx, "add-fd", nil, f)
	if err == nil {
		err = json.Unmarshal(ret, &added)
	}
	if err != nil {
		return "", fmt.Errorf("qemu: passing the screendump file: %w", err)
	}
	defer func() {
		_ = i.command(context.WithoutCancel(ctx), "remove-fd", map[string]int{"fdset-id": added.FdsetID}, nil)
	}()
	args := map[string]string{"filename": fmt.Sprintf("/dev/fdset/%d", added.FdsetID)}
	if c.Greeting().Version.AtLeast(7, 1) {
		args["format"] = "png"
	}
	if err := i.command(ctx, "screendump", args, nil); err != nil {
		// QEMU's words for a VM without a display device.
		if strings.Contains(err.Error(), "no console to take a screendump") {
			return "", fmt.Errorf("%w: vm %s has no display to take a screenshot of: set vga = std (or virtio) in its qemu section and restart it", hypervisor.ErrNotSupported, i.spec.Name)
		}
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(r, 0, maxScreendump+1), maxScreendump+1))
	if err == nil && len(b) > maxScreendump {
		err = fmt.Errorf("larger than %d bytes", maxScreendump)
	}
	if err != nil {
		return "", fmt.Errorf("qemu: reading the screendump: %w", err)
	}
	format := "ppm"
	if bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		format = "png"
	}
	if _, err := w.Write(b); err != nil {
		return "", err
	}
	return format, nil
}

// infoQueries maps Info's keys to QMP queries (the list vmadmd's info
// offers, plus status).
var infoQueries = []struct{ key, cmd string }{
	{"status", "query-status"},
	{"version", "query-version"},
	{"kvm", "query-kvm"},
	{"cpus", "query-cpus-fast"},
	{"block", "query-block"},
	{"blockstats", "query-blockstats"},
	{"chardev", "query-chardev"},
	{"pci", "query-pci"},
	{"vnc", "query-vnc"},
}

// Info runs the QMP queries and returns their results by name. A query
// that fails is reported under "errors" rather than failing the lot.
func (i *instance) Info(ctx context.Context) (map[string]any, error) {
	out := map[string]any{"pid": i.proc.PID()}
	if i.accel != "" {
		out["accel"] = i.accel
	}
	errs := map[string]string{}
	for _, q := range infoQueries {
		var v any
		if err := i.command(ctx, q.cmd, nil, &v); err != nil {
			if errors.Is(err, hypervisor.ErrExited) || ctx.Err() != nil {
				return nil, err
			}
			errs[q.key] = err.Error()
			continue
		}
		out[q.key] = v
	}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	return out, nil
}

var (
	_ hypervisor.Pauser        = (*instance)(nil)
	_ hypervisor.Resetter      = (*instance)(nil)
	_ hypervisor.NMIer         = (*instance)(nil)
	_ hypervisor.Screenshotter = (*instance)(nil)
	_ hypervisor.Inspector     = (*instance)(nil)
)
