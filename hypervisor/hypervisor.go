// Package hypervisor defines what the supervisor needs from a hypervisor
// driver: start a VM process, find it again after the daemon restarted,
// learn why it exited, ask it to stop, and force it to.
//
// Drivers live in sub-packages (qemu, bhyve, exec). None of them imports the
// supervisor or the config package: the supervisor converts a VM's config
// into a Spec, whose Options field carries the driver's own settings struct.
//
// Extra abilities (pause, reset, NMI, screenshots, inspection) are optional
// interfaces an Instance may implement; callers find them by type assertion.
package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"
)

// Sentinel errors shared by every driver.
var (
	// ErrGone means the process a Handle names no longer exists, or the pid
	// now belongs to another process (its start time differs).
	ErrGone = errors.New("hypervisor process is gone")
	// ErrNotSupported means the driver or instance cannot do what was asked.
	ErrNotSupported = errors.New("not supported by this hypervisor")
	// ErrExited means the instance has already exited.
	ErrExited = errors.New("hypervisor process has exited")
)

// ExitReason classifies why a VM process ended. The values go on the wire
// and into logs.
type ExitReason string

const (
	// ExitPoweroff: the guest powered itself off (or answered an ACPI
	// shutdown request).
	ExitPoweroff ExitReason = "poweroff"
	// ExitReboot: the guest asked to reboot; the process ended so that the
	// supervisor can relaunch it.
	ExitReboot ExitReason = "reboot"
	// ExitCrash: the process died on its own without a clean shutdown
	// (signal, panic, triple fault, error exit, or unknown cause).
	ExitCrash ExitReason = "crash"
	// ExitKilled: the host ended it (a forced stop, a signal sent by
	// someone on the host, QMP quit).
	ExitKilled ExitReason = "killed"
)

// Exit describes how a VM process ended.
type Exit struct {
	Reason ExitReason `json:"reason"`
	// Code is the exit status, or -1 when the process was killed by a
	// signal or its status could not be observed (StatusUnknown).
	Code int `json:"code"`
	// Signal names the signal that ended the process ("SIGKILL"), if any.
	Signal string `json:"signal,omitempty"`
	// StatusUnknown is set when the exit status could not be observed: the
	// process was re-adopted after a daemon restart, so it is not the
	// daemon's child, and the host offers no other way to learn it (Linux:
	// the proc connector answers only in the host's initial user and pid
	// namespaces, and before Linux 6.6 only root; FreeBSD always reports
	// it). Code is then -1 and Reason is inferred from what
	// was asked of this Instance: ExitPoweroff after Shutdown (the graceful
	// stop it asked for is taken to have worked, so on_poweroff applies),
	// ExitKilled after Kill, and ExitCrash when nothing was asked.
	StatusUnknown bool `json:"status_unknown,omitempty"`
	// Detail says what the driver saw, for people: a QEMU SHUTDOWN reason
	// such as "guest-shutdown", or "bhyve exit 3: triple fault".
	Detail string    `json:"detail,omitempty"`
	Time   time.Time `json:"time"`
}

func (e Exit) String() string {
	s := string(e.Reason)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// HandleVersion is the current version of the Handle layout. Fields added
// with omitempty (PGID, Cgroup) keep the version: older handles lack them
// and still read, and older daemons ignore them.
const HandleVersion = 1

// Handle is what the daemon persists to find a running instance again after
// it restarted. It is JSON-serialisable and versioned.
type Handle struct {
	Version int    `json:"version"`
	Driver  string `json:"driver"`
	PID     int    `json:"pid"`
	// StartTime is the process start time as the kernel reports it (Linux:
	// clock ticks since boot, field 22 of /proc/PID/stat; FreeBSD: ki_start
	// in microseconds). Together with PID it identifies the process across
	// pid reuse.
	StartTime uint64 `json:"start_time"`
	// RunDir is the instance's runtime directory (sockets, pidfile,
	// captured output).
	RunDir string `json:"run_dir"`
	// PGID is the process group that holds all the VM's processes (exec:
	// the process leads its own group), 0 when the VM is the process
	// alone. Handles written before the field existed lack it.
	PGID int `json:"pgid,omitempty"`
	// Cgroup is the cgroup v2 directory that holds all the VM's processes,
	// also those that left the process group; empty when none is used.
	Cgroup string `json:"cgroup,omitempty"`
	// Sockets names the control sockets by role ("qmp", "serial", "vnc").
	Sockets map[string]string `json:"sockets,omitempty"`
	// Extra is driver-private state.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// Spec is what a driver needs to launch one VM.
type Spec struct {
	Name string
	// RunDir is a directory private to this VM (created by the driver if
	// missing) for sockets, pidfiles, the captured output and generated
	// configuration.
	RunDir string
	// MemoryMB is the guest memory in MiB.
	MemoryMB int64
	// CPUs is the number of virtual CPUs; Sockets, Cores and Threads give
	// the topology when non-zero.
	CPUs, Sockets, Cores, Threads int
	// BootROM is a firmware image (UEFI), empty for the default.
	BootROM string
	// ConfigFile is the user's own hypervisor config file (bhyve config,
	// QEMU -readconfig), combined with generated settings into
	// ConfigFile+".generated". Empty when there is none.
	ConfigFile string
	// Output receives the hypervisor's stdout and stderr, line by line. The
	// process never writes to a pipe held by the daemon (the VM must
	// survive the daemon), so drivers capture into a file under RunDir and
	// follow it.
	Output io.Writer
	// Console receives what the guest writes to its serial console, line
	// by line as the guest ends them (often "\r\n"), including what it
	// wrote while the daemon was down. Nil drops it. Drivers without a
	// console capture ignore it.
	Console io.Writer
	// Options holds the driver's own settings (*qemu.Options,
	// *bhyve.Options, *exec.Options). Nil means the driver's defaults.
	Options any
}

// Driver launches and re-adopts VM processes of one kind.
type Driver interface {
	// Name is the driver's name as written in configs ("qemu").
	Name() string
	// Start launches the VM and returns once it runs (QEMU: QMP connected
	// and the status is running). Cancelling ctx aborts a start that is
	// still in progress (the half-started process is killed); it never
	// kills an instance Start has already returned.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Recover re-adopts a process started by an earlier daemon. It returns
	// an error wrapping ErrGone when the process no longer exists or the
	// pid was reused.
	Recover(ctx context.Context, spec Spec, h Handle) (Instance, error)
}

// Instance is one running VM process.
type Instance interface {
	// Handle returns what to persist to Recover this instance later.
	Handle() Handle
	// Done is closed once the process has exited and Exit is final. Any
	// number of goroutines may wait on it.
	Done() <-chan struct{}
	// Exit returns how the process ended; ok is false while it still runs.
	Exit() (exit Exit, ok bool)
	// Shutdown asks the guest to power off (ACPI power button, SIGTERM to
	// bhyve). It returns once the request was delivered, not when the guest
	// has stopped: wait on Done for that.
	Shutdown(ctx context.Context) error
	// Kill ends the process now. Killing an instance that has already
	// exited is not an error.
	Kill() error
}

// Pauser is an Instance whose guest can be frozen and thawed.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Resetter is an Instance that can hard-reset its guest (the reset button).
type Resetter interface {
	Reset(ctx context.Context) error
}

// NMIer is an Instance that can inject a non-maskable interrupt.
type NMIer interface {
	NMI(ctx context.Context) error
}

// Screenshotter is an Instance that can capture its display. It writes the
// image to w and returns its format ("png" or "ppm").
type Screenshotter interface {
	Screenshot(ctx context.Context, w io.Writer) (format string, err error)
}

// Consoler is an Instance whose guest has a console to type into. Console
// connects to it; the hypervisor may serve one connection at a time, so
// the daemon holds one and relays. An instance started without a console
// returns an error wrapping ErrNotSupported that says what to set, at
// once and whatever the context.
type Consoler interface {
	Console(ctx context.Context) (io.ReadWriteCloser, error)
}

// VNCRelayed is an Instance whose VNC server listens on a unix socket the
// daemon is to make reachable over TCP on host (an IP address; empty
// means loopback). The socket is "" when there is none to relay.
type VNCRelayed interface {
	VNCRelay() (socket, host string)
}

// Inspector is an Instance that can describe itself in detail (block
// devices, CPUs, PCI devices, versions). The result is JSON-ready.
type Inspector interface {
	Info(ctx context.Context) (map[string]any, error)
}

// GuestAgent is an Instance whose guest may run an agent that reports on
// the guest from inside (QEMU: qemu-guest-agent). The guest is not
// trusted: what it reports is bounded and cleaned, and every call ends
// with its context (an absent agent never answers).
type GuestAgent interface {
	// HasGuestAgent reports whether the instance was started with a
	// channel for an agent; without one the other methods fail at once
	// with an error wrapping ErrNotSupported.
	HasGuestAgent() bool
	// GuestInterfaces lists the guest's network interfaces and their
	// addresses.
	GuestInterfaces(ctx context.Context) ([]GuestInterface, error)
	// GuestDetails reports the guest's host name and operating system.
	GuestDetails(ctx context.Context) (GuestDetails, error)
}

// GuestInterface is one network interface as the guest sees it.
type GuestInterface struct {
	Name string `json:"name"`
	MAC  string `json:"mac,omitempty"`
	// Addresses are in CIDR notation ("192.0.2.10/24").
	Addresses []string `json:"addresses,omitempty"`
}

// GuestDetails is what a guest agent says about its guest.
type GuestDetails struct {
	Hostname string `json:"hostname,omitempty"`
	// OS is the operating system's own name for itself (os-release's
	// PRETTY_NAME), Kernel the kernel release.
	OS     string `json:"os,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	// AgentVersion is the agent's version.
	AgentVersion string `json:"agent_version,omitempty"`
}

// SaveProgress is how far the save of a guest's state has got.
type SaveProgress struct {
	// Status is the hypervisor's word for the phase (QEMU: setup, active,
	// completed).
	Status string
	// Total counts bytes of guest memory (0 while not yet known),
	// Remaining those not yet saved; Transferred is what was written
	// (pages that hold only zeros take next to nothing).
	Transferred, Total, Remaining uint64
}

// Suspender is an Instance whose guest's memory and device state can be
// saved to a file, to be restored later by a Restorer of the same driver.
type Suspender interface {
	// Save pauses the guest and writes its state to f, from f's current
	// offset, calling progress now and then (from the calling
	// goroutine). It returns once the state is written whole; the process
	// then still runs, the guest paused, until Kill. After an error the
	// guest stays paused too: Pauser.Resume carries on with it.
	Save(ctx context.Context, f *os.File, progress func(SaveProgress)) error
	// SavedBy names the hypervisor and version that writes the state
	// ("qemu 7.2.22"); a restore by another one may fail.
	SavedBy() string
}

// SaveCanceller is a Suspender that can cancel a save still in progress
// (one a daemon that went down left running), so that the guest can run
// on.
type SaveCanceller interface {
	CancelSave(ctx context.Context) error
}

// Restorer is a Driver that can start a VM from a state a Suspender saved
// instead of booting it.
type Restorer interface {
	// Restore launches the VM as Start does, loads the state from f (from
	// f's current offset) and returns once the guest runs on from where
	// it was saved. A state the hypervisor cannot load (another version,
	// a changed config) is an error that quotes the hypervisor's reason;
	// nothing is left running.
	Restore(ctx context.Context, spec Spec, f *os.File) (Instance, error)
	// Compat names what a saved state must match to load here: the
	// hypervisor and version that would restore it (as SavedBy says it)
	// and a digest of the virtual hardware spec describes, the same on
	// every host for the same hardware (paths of the run directory
	// aside).
	Compat(ctx context.Context, spec Spec) (savedBy, machine string, err error)
}
