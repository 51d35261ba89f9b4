package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmstated/vmstated/hypervisor"
)

// File names inside a VM's run directory.
const (
	qmpSocket    = "qmp.sock"
	qmpAltSocket = "qmp-alt.sock"
	serialSocket = "serial.sock"
	vncSocket    = "vnc.sock"
	qgaSocket    = "qga.sock"
	pidFile      = "qemu.pid"
	outputFile   = "qemu.log"
	// consoleFile is QEMU's own copy of what the guest wrote to its serial
	// port, kept whether or not anyone is connected to the socket (and
	// while the daemon is down); the daemon follows it into the VM log.
	consoleFile = "console.log"
	// seedFile is the cloud-init NoCloud seed image.
	seedFile = "cidata.iso"
)

// AgentPortName is the virtio-serial port name qemu-guest-agent opens.
const AgentPortName = "org.qemu.guest_agent.0"

// maxSocketPath is the longest unix socket path the kernel accepts
// (sun_path is 108 bytes on Linux, 104 on FreeBSD, including the NUL).
const maxSocketPath = 103

// runPaths are the files QEMU creates in the run directory.
type runPaths struct {
	QMP, QMPAlt, Serial, VNC, QGA, PID, Output, Console, Seed string
}

func pathsFor(runDir string) runPaths {
	return runPaths{
		QMP:     filepath.Join(runDir, qmpSocket),
		QMPAlt:  filepath.Join(runDir, qmpAltSocket),
		Serial:  filepath.Join(runDir, serialSocket),
		VNC:     filepath.Join(runDir, vncSocket),
		QGA:     filepath.Join(runDir, qgaSocket),
		PID:     filepath.Join(runDir, pidFile),
		Output:  filepath.Join(runDir, outputFile),
		Console: filepath.Join(runDir, consoleFile),
		Seed:    filepath.Join(runDir, seedFile),
	}
}

// escape doubles commas, QEMU's quoting inside option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// buildArgs returns QEMU's arguments (without the program name) for spec
// and o (defaults applied, validated). accel is the resolved accelerator;
// readConfig, when not empty, is a -readconfig file placed before the
// extra arguments.
func buildArgs(spec hypervisor.Spec, o Options, accel, readConfig string) []string {
	p := pathsFor(spec.RunDir)
	a := []string{"-name", "guest=" + escape(spec.Name)}
	if readConfig != "" {
		// The machine, memory and CPU settings live in the generated
		// file, where they override the user's own.
		a = append(a, "-readconfig", readConfig)
	} else {
		a = append(a, "-machine", escape(o.Machine)+",accel="+accel)
		if spec.MemoryMB > 0 {
			a = append(a, "-m", strconv.FormatInt(spec.MemoryMB, 10))
		}
		if smp := smpValue(spec); smp != "" {
			a = append(a, "-smp", smp)
		}
	}
	if o.CPU != "" {
		a = append(a, "-cpu", o.CPU)
	}
	if spec.BootROM != "" {
		a = append(a, "-bios", spec.BootROM)
	}
	// Plain arguments, not key=value lists: no comma quoting.
	if o.Kernel != "" {
		a = append(a, "-kernel", o.Kernel)
	}
	if o.Initrd != "" {
		a = append(a, "-initrd", o.Initrd)
	}
	if o.Append != "" {
		a = append(a, "-append", o.Append)
	}
	// Hygiene: no default devices, no host-wide config files, no reboot
	// inside the process (a guest reboot ends it so the supervisor
	// decides), no window.
	a = append(a, "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none")
	a = append(a, sandboxArgs(o)...)
	if o.VGA != "none" {
		a = append(a, "-vga", o.VGA)
	}
	// The password itself is set through QMP once QEMU runs: never on a
	// command line others can read.
	pw := ""
	if o.VNCPassword != "" {
		pw = ",password=on"
	}
	switch o.VNC {
	case "off":
	case "unix", "auto":
		a = append(a, "-vnc", "unix:"+escape(p.VNC)+pw)
	default:
		a = append(a, "-vnc", o.VNC+pw)
	}
	a = append(a,
		"-chardev", "socket,id=qmp,path="+escape(p.QMP)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		// A QMP socket serves one client at a time; the second one lets a
		// restarted daemon connect while a stale connection lingers.
		"-chardev", "socket,id=qmp-alt,path="+escape(p.QMPAlt)+",server=on,wait=off",
		"-mon", "chardev=qmp-alt,mode=control",
		"-pidfile", p.PID,
	)
	if o.Serial {
		a = append(a,
			// logappend: a restarted guest adds to the file the daemon
			// may not have finished copying.
			"-chardev", "socket,id=serial0,path="+escape(p.Serial)+",server=on,wait=off,logfile="+escape(p.Console)+",logappend=on",
			"-serial", "chardev:serial0",
		)
	}
	if o.GuestAgent {
		a = append(a,
			"-chardev", "socket,id=qga0,path="+escape(p.QGA)+",server=on,wait=off",
			"-device", "virtio-serial-pci,id=qga-serial",
			// The name is what qemu-guest-agent looks for.
			"-device", "virtserialport,bus=qga-serial.0,chardev=qga0,name="+AgentPortName,
		)
	}
	scsi := false
	ide := 0
	// ideSlot places IDE devices explicitly: q35's AHCI has six buses of
	// one unit each, the pc machines two buses of two units.
	ideSlot := func() string {
		n := ide
		ide++
		if o.Machine == "pc" || strings.HasPrefix(o.Machine, "pc-i440fx") || o.Machine == "isapc" {
			return fmt.Sprintf(",bus=ide.%d,unit=%d", n/2, n%2)
		}
		return fmt.Sprintf(",bus=ide.%d", n)
	}
	for i, d := range o.Disks {
		id := fmt.Sprintf("disk%d", i)
		drive := "file=" + escape(d.Path) + ",if=none,id=" + id
		if d.Format != "" {
			drive += ",format=" + d.Format
		}
		if d.Cache != "" {
			drive += ",cache=" + d.Cache
		}
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive)
		switch d.Interface {
		case "virtio":
			a = append(a, "-device", "virtio-blk-pci,drive="+id)
		case "ide":
			a = append(a, "-device", "ide-hd,drive="+id+ideSlot())
		case "scsi":
			if !scsi {
				a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			a = append(a, "-device", "scsi-hd,bus=scsi0.0,drive="+id)
		}
	}
	if o.CDROM != "" {
		a = append(a,
			"-drive", "file="+escape(o.CDROM)+",if=none,id=cdrom0,media=cdrom,readonly=on",
			"-device", "ide-cd,drive=cdrom0"+ideSlot(),
		)
	}
	if o.CloudInit != nil {
		a = append(a,
			"-drive", "file="+escape(p.Seed)+",if=none,id=cidata,media=cdrom,readonly=on,format=raw",
			"-device", "ide-cd,drive=cidata"+ideSlot(),
		)
	}
	for i, n := range o.NICs {
		id := fmt.Sprintf("net%d", i)
		netdev := "user,id=" + id
		if n.Type == "tap" {
			netdev = "tap,id=" + id + ",ifname=" + n.Ifname + ",script=no,downscript=no"
		}
		dev := n.Model + ",netdev=" + id
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		a = append(a, "-netdev", netdev, "-device", dev)
	}
	return append(a, o.ExtraArgs...)
}

// sandboxArgs confines a QEMU started by a root daemon: seccomp denies
// obsolete system calls, spawning processes and changing resource
// controls, and, with User set, QEMU drops to that user once it has
// opened what it needs (-runas). QEMU 7.2 installs the filter before it
// drops, so the drop's own setuid needs elevateprivileges=allow there;
// after it every uid is the user's and no_new_privs is set, so there is no
// way back up. Without a user, elevating is denied too.
func sandboxArgs(o Options) []string {
	if !o.Sandbox {
		return nil
	}
	elevate := "deny"
	if o.User != "" {
		elevate = "allow"
	}
	a := []string{"-sandbox", "on,obsolete=deny,elevateprivileges=" + elevate + ",spawn=deny,resourcecontrol=deny"}
	if o.User != "" {
		a = append(a, "-runas", o.User)
	}
	return a
}

// smpKeys returns the -smp settings of spec in order.
func smpKeys(spec hypervisor.Spec) []hypervisor.Setting {
	var s []hypervisor.Setting
	for _, t := range []struct {
		k string
		v int
	}{{"cpus", spec.CPUs}, {"sockets", spec.Sockets}, {"cores", spec.Cores}, {"threads", spec.Threads}} {
		if t.v > 0 {
			s = append(s, hypervisor.Setting{Key: t.k, Value: strconv.Itoa(t.v)})
		}
	}
	return s
}

func smpValue(spec hypervisor.Spec) string {
	var parts []string
	for _, kv := range smpKeys(spec) {
		if kv.Key == "cpus" {
			parts = append(parts, kv.Value)
		} else {
			parts = append(parts, kv.Key+"="+kv.Value)
		}
	}
	return strings.Join(parts, ",")
}

// generatedSections are the settings that win over a user's -readconfig
// file.
func generatedSections(spec hypervisor.Spec, o Options, accel string) []hypervisor.QEMUSection {
	secs := []hypervisor.QEMUSection{{Type: "machine", Settings: []hypervisor.Setting{
		{Key: "type", Value: o.Machine}, {Key: "accel", Value: accel},
	}}}
	if spec.MemoryMB > 0 {
		secs = append(secs, hypervisor.QEMUSection{Type: "memory", Settings: []hypervisor.Setting{
			{Key: "size", Value: strconv.FormatInt(spec.MemoryMB, 10)},
		}})
	}
	if smp := smpKeys(spec); len(smp) > 0 {
		secs = append(secs, hypervisor.QEMUSection{Type: "smp-opts", Settings: smp})
	}
	return secs
}

// checkSocketPaths reports a run directory too long for unix sockets.
func checkSocketPaths(runDir string) error {
	p := pathsFor(runDir)
	for _, s := range []string{p.QMP, p.QMPAlt, p.Serial, p.VNC, p.QGA} {
		if len(s) > maxSocketPath {
			return fmt.Errorf("%w: socket path %s is longer than %d bytes, the limit for unix sockets: use a shorter run directory", ErrInvalidOptions, s, maxSocketPath)
		}
	}
	return nil
}

// options extracts the driver's settings from spec.Options.
func options(spec hypervisor.Spec) (Options, error) {
	switch o := spec.Options.(type) {
	case nil:
		return Options{}.withDefaults(), nil
	case *Options:
		if o == nil {
			return Options{}.withDefaults(), nil
		}
		return o.withDefaults(), nil
	case Options:
		return o.withDefaults(), nil
	default:
		return Options{}, fmt.Errorf("%w: Spec.Options is %T, want *qemu.Options", ErrInvalidOptions, spec.Options)
	}
}
