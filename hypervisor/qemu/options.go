package qemu

import (
	"errors"

	"fmt"
	"github.com/vmstated/vmstated/cloudinit"
	"os"
	"regexp"
	"strings"
)

// ErrInvalidOptions is wrapped by every error about unusable Options.
var ErrInvalidOptions = errors.New("invalid qemu options")

// Options are the QEMU settings of one VM (the `qemu { ... }` block of its
// config). The zero value means the defaults.
type Options struct {
	// Binary is the QEMU program; a bare name is looked up in PATH.
	// Default "qemu-system-x86_64".
	Binary string
	// Machine is the -machine type. Default "q35".
	Machine string
	// Accel is "auto" (default: kvm when /dev/kvm is usable, else tcg),
	// "kvm" or "tcg".
	Accel string
	// CPU is the -cpu model; empty leaves QEMU's default.
	CPU string
	// VGA is "none" (default), "std", "virtio", "qxl" or "cirrus".
	VGA string
	// VNC is "off" (default), "unix" (a socket in the run directory),
	// "auto" (the same socket, which the daemon relays to a TCP port), or
	// a display such as ":1" or "127.0.0.1:1".
	VNC string
	// Serial puts the first serial port on a unix socket in the run
	// directory. The config's default is true; the zero Options has it
	// off.
	Serial bool
	// Disks are attached in order.
	Disks []Disk
	// CDROM is an ISO image attached as a read-only CD drive.
	CDROM string
	// NICs are network devices, in order.
	NICs []NIC
	// ExtraArgs are appended to the command line as they are.
	ExtraArgs []string
	// Kernel boots this kernel image directly (-kernel) instead of from a
	// disk; Initrd (-initrd) and Append (-append, the kernel's command
	// line) need it.
	Kernel, Initrd, Append string
	// VNCPassword, when set, is asked of VNC clients (VNC authentication;
	// the protocol uses 8 characters at most).
	VNCPassword string
	// VNCListen is where the daemon listens for VNC clients with VNC
	// "auto"; empty means 127.0.0.1.
	VNCListen string
	// User is the account QEMU drops to after set-up (-runas); empty
	// keeps it as the daemon's user. It needs a root daemon. The run
	// directory's files are opened before the drop; disk images must
	// be readable (and writable, unless read-only) by the user, since
	// QEMU may open them again later (media changes, snapshots).
	User string
	// Sandbox adds -sandbox (and -runas for User). The driver sets it
	// when the daemon runs as root.
	Sandbox bool
	// GuestAgent adds the virtio-serial port org.qemu.guest_agent.0 on a
	// socket in the run directory, for qemu-guest-agent in the guest.
	GuestAgent bool
	// StopMethod is how Shutdown asks the guest to power off: "acpi"
	// (default, the power button) or "agent" (guest-shutdown through the
	// guest agent, and the power button when the agent does not take
	// the request). "agent" needs GuestAgent.
	StopMethod string
	// CloudInit, when set, is built into a NoCloud seed image in the run
	// directory before each start and attached as a read-only CD drive.
	CloudInit *cloudinit.Config
}

// Disk is one disk image.
type Disk struct {
	Path string
	// Format is the image format ("qcow2", "raw"); empty lets QEMU probe
	// (which it refuses to write to block 0 of raw images).
	Format string
	// Interface is "virtio" (default), "ide", "scsi" (on a virtio-scsi
	// controller) or "none" (a -drive with if=none, for ExtraArgs to use).
	Interface string
	// Cache is the -drive cache mode ("none", "writeback", ...); empty
	// leaves QEMU's default.
	Cache    string
	ReadOnly bool
}

// NIC is one network device.
type NIC struct {
	// Type is "user" (QEMU's built-in NAT) or "tap".
	Type string
	// Ifname is the tap device; required for tap.
	Ifname string
	// Bridge is informational (for hooks that plumb the tap device).
	Bridge string
	// Model is the device model; default "virtio-net-pci".
	Model string
	// MAC is the guest's MAC address; empty lets QEMU choose.
	MAC string
}

// Defaults.
const (
	DefaultBinary   = "qemu-system-x86_64"
	DefaultMachine  = "q35"
	DefaultNICModel = "virtio-net-pci"
)

// Stop methods.
const (
	StopACPI  = "acpi"
	StopAgent = "agent"
)

var (
	vncDisplay = regexp.MustCompile(`^[A-Za-z0-9.\-\[\]:]*:[0-9]+$`)
	macAddr    = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	cacheModes = map[string]bool{"none": true, "writeback": true, "writethrough": true, "directsync": true, "unsafe": true}
	vgaTypes   = map[string]bool{"none": true, "std": true, "virtio": true, "qxl": true, "cirrus": true}
)

// withDefaults returns a copy of o with empty fields filled in.
func (o Options) withDefaults() Options {
	// A root daemon always confines QEMU.
	o.Sandbox = o.Sandbox || os.Geteuid() == 0
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.Machine == "" {
		o.Machine = DefaultMachine
	}
	if o.Accel == "" {
		o.Accel = "auto"
	}
	if o.VGA == "" {
		o.VGA = "none"
	}
	if o.VNC == "" {
		o.VNC = "off"
	}
	if o.StopMethod == "" {
		o.StopMethod = StopACPI
	}
	o.Disks = append([]Disk(nil), o.Disks...)
	for i := range o.Disks {
		if o.Disks[i].Interface == "" {
			o.Disks[i].Interface = "virtio"
		}
	}
	o.NICs = append([]NIC(nil), o.NICs...)
	for i := range o.NICs {
		if o.NICs[i].Model == "" {
			o.NICs[i].Model = DefaultNICModel
		}
	}
	return o
}

// Validate reports every problem in o at once, each saying what to change.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	switch o.Accel {
	case "auto", "kvm", "tcg":
	default:
		bad("accel %q: use auto, kvm or tcg", o.Accel)
	}
	if !vgaTypes[o.VGA] {
		bad("vga %q: use none, std, virtio, qxl or cirrus", o.VGA)
	}
	if o.VNC != "off" && o.VNC != "unix" && o.VNC != "auto" && !vncDisplay.MatchString(o.VNC) {
		bad("vnc %q: use off, auto, unix, or a display such as :1 or 127.0.0.1:1", o.VNC)
	}
	if o.VNCPassword != "" && o.VNC == "off" {
		bad("vnc_password needs vnc (auto, unix or a display)")
	}
	if len(o.VNCPassword) > 8 || strings.ContainsAny(o.VNCPassword, "\n\x00,") {
		bad("vnc_password: at most 8 characters on one line, without commas")
	}
	switch o.StopMethod {
	case StopACPI:
	case StopAgent:
		if !o.GuestAgent {
			bad("stop_method agent needs guest_agent = true (the channel the request goes through)")
		}
	default:
		bad("stop_method %q: use acpi or agent", o.StopMethod)
	}
	if strings.ContainsAny(o.Machine, ", ") {
		bad("machine %q: give only the machine type; put properties in extra_args", o.Machine)
	}
	for i, d := range o.Disks {
		switch {
		case d.Path == "":
			bad("disk %d: path is empty", i+1)
		case strings.ContainsAny(d.Path, "\n\x00"):
			bad("disk %d: path %q contains a newline or NUL", i+1, d.Path)
		}
		switch d.Interface {
		case "virtio", "ide", "scsi", "none":
		default:
			bad("disk %d: interface %q: use virtio, ide, scsi or none", i+1, d.Interface)
		}
		if d.Cache != "" && !cacheModes[d.Cache] {
			bad("disk %d: cache %q: use none, writeback, writethrough, directsync or unsafe", i+1, d.Cache)
		}
		if strings.ContainsAny(d.Format, ", ") {
			bad("disk %d: format %q is not a format name", i+1, d.Format)
		}
	}
	for i, n := range o.NICs {
		switch n.Type {
		case "user":
		case "tap":
			if n.Ifname == "" {
				bad("nic %d: type tap needs ifname (the tap device to use)", i+1)
			}
		case "":
			bad("nic %d: type is missing: use user or tap", i+1)
		default:
			bad("nic %d: type %q: use user or tap", i+1, n.Type)
		}
		if strings.ContainsAny(n.Ifname, ", ") {
			bad("nic %d: ifname %q is not an interface name", i+1, n.Ifname)
		}
		if strings.ContainsAny(n.Model, ", ") {
			bad("nic %d: model %q: give only the device model", i+1, n.Model)
		}
		if n.MAC != "" && !macAddr.MatchString(n.MAC) {
			bad("nic %d: mac %q: write it as 52:54:00:12:34:56", i+1, n.MAC)
		}
	}
	if o.Kernel == "" && (o.Initrd != "" || o.Append != "") {
		bad("initrd and append need kernel (direct kernel boot): set kernel or remove them")
	}
	if strings.ContainsAny(o.Append, "\n\x00") {
		bad("append %q contains a newline or NUL; the kernel command line is one line", o.Append)
	}
	if strings.ContainsAny(o.User, ", :\n\x00") {
		bad("user %q is not an account name", o.User)
	}
	if o.User != "" && !o.Sandbox {
		bad("user %q: QEMU can drop to another user only when vmstated runs as root", o.User)
	}
	for _, a := range o.ExtraArgs {
		switch a {
		case "-daemonize", "--daemonize":
			bad("extra_args: %s would detach QEMU from vmstated, which must stay its parent; remove it", a)
		case "-no-shutdown", "--no-shutdown":
			bad("extra_args: %s would keep QEMU alive after the guest powers off, so the exit would never be seen; remove it", a)
		case "-S":
			bad("extra_args: -S would leave the guest paused at start; pause it after start instead")
		}
	}
	return errors.Join(errs...)
}
