package supervisor

import (
	"net/netip"
	"sort"
	"syscall"

	"github.com/vmstated/vmstated/cloudinit"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/bhyve"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/vmnet"
	"golang.org/x/sys/unix"
)

// settingsFrom converts a validated config into the actor's settings and
// the driver's own options. It is the only place that knows the config's
// field names; drivers never see the config package.
func settingsFrom(c *config.VM) *settings {
	s := &settings{
		name:           c.Name,
		dir:            c.Dir,
		file:           c.File,
		scriptPath:     c.ScriptPath,
		description:    c.Description,
		owner:          c.Owner,
		group:          c.Group,
		autostart:      c.Autostart,
		depends:        append([]string(nil), c.Depends...),
		driver:         c.Hypervisor,
		hookTimeout:    c.HookTimeout,
		hookTimeouts:   c.HookTimeouts,
		stopTimeout:    c.StopTimeout,
		maxRestart:     c.MaxRestart,
		maxRestartTime: c.MaxRestartTime,
		onPoweroff:     Policy(c.OnPoweroff),
		onReboot:       Policy(c.OnReboot),
		onCrash:        Policy(c.OnCrash),
		onHostShutdown: string(c.OnHostShutdown),
		logMaxSizeMB:   int(c.LogMaxSizeMB),
		logMaxFiles:    c.LogMaxFiles,
		scalars:        c.Scalars(),
		digest:         c.Digest,
		spec: hypervisor.Spec{
			Name:       c.Name,
			MemoryMB:   c.MemoryMB,
			CPUs:       c.CPUs,
			Sockets:    c.Sockets,
			Cores:      c.Cores,
			BootROM:    c.BootROM,
			ConfigFile: c.ConfigFile,
		},
	}
	switch c.Hypervisor {
	case config.HypervisorQEMU:
		o := qemuOptions(c.Name, c.QEMU)
		s.net = netSpec(c)
		if o != nil && c.CloudInit != nil {
			ci := c.CloudInit
			o.CloudInit = &cloudinit.Config{UserData: ci.UserData, MetaData: ci.MetaData, NetworkConfig: ci.NetworkConfig,
				Hostname: ci.Hostname, SSHAuthorizedKeys: append([]string(nil), ci.SSHAuthorizedKeys...)}
		}
		s.spec.Options = o
		s.vncPasswordAuto = c.QEMU != nil && c.QEMU.VNCPasswordAuto
	case config.HypervisorExec:
		s.spec.Options = execOptions(c.Exec)
	case config.HypervisorBhyve:
		s.spec.Options = bhyveOptions(c)
	}
	return s
}

func qemuOptions(name string, q *config.QEMU) *qemu.Options {
	if q == nil {
		return nil
	}
	o := &qemu.Options{
		Binary: q.Binary, Machine: q.Machine, Accel: q.Accel, CPU: q.CPU,
		VGA: q.VGA, VNC: q.VNC, Serial: q.Serial, CDROM: q.CDROM,
		ExtraArgs: append([]string(nil), q.ExtraArgs...),
		Kernel:    q.Kernel, Initrd: q.Initrd, Append: q.Append, VNCPassword: q.VNCPassword,
		VNCListen:  q.VNCListen,
		User:       q.User,
		GuestAgent: q.GuestAgent, StopMethod: q.StopMethod,
	}
	for _, d := range q.Disks {
		o.Disks = append(o.Disks, qemu.Disk{Path: d.Path, Format: d.Format, Interface: d.Interface,
			Cache: d.Cache, ReadOnly: d.ReadOnly})
	}
	for i, n := range q.NICs {
		nic := qemu.NIC{Type: n.Type, Ifname: n.Ifname, Bridge: n.Bridge, Model: n.Model, MAC: n.MAC}
		if n.Type == config.NICBridge || n.Type == config.NICLocal {
			// QEMU opens the tap the daemon made.
			nic.Type, nic.Ifname = config.NICTap, tapOf(name, i, n)
		}
		o.NICs = append(o.NICs, nic)
	}
	return o
}

// tapOf is the tap device of NIC i of VM name: the one the config names,
// else the daemon's name for it.
func tapOf(name string, i int, n config.NIC) string {
	if n.Ifname != "" {
		return n.Ifname
	}
	return vmnet.TapName(name, i)
}

// netSpec is what the daemon sets up for the NICs of type bridge and
// local; the other types are QEMU's or the hooks' business.
func netSpec(c *config.VM) vmnet.Spec {
	spec := vmnet.Spec{VM: c.Name}
	if c.CloudInit != nil {
		spec.Hostname = c.CloudInit.Hostname
	}
	if c.QEMU == nil {
		return spec
	}
	for i, n := range c.QEMU.NICs {
		nic := vmnet.NIC{Tap: tapOf(c.Name, i, n), Bridge: n.Bridge, NAT: n.NAT}
		switch n.Type {
		case config.NICBridge:
			nic.Type = vmnet.TypeBridge
		case config.NICLocal:
			nic.Type, nic.Bridge = vmnet.TypeLocal, ""
			if n.Pool != "" {
				nic.Pool = netip.MustParsePrefix(n.Pool) // validated by config
			}
			for _, a := range n.DNS {
				nic.DNS = append(nic.DNS, netip.MustParseAddr(a))
			}
		default:
			continue
		}
		spec.NICs = append(spec.NICs, nic)
	}
	return spec
}

func execOptions(e *config.Exec) *exec.Options {
	if e == nil {
		return nil
	}
	o := &exec.Options{
		Command:           append([]string(nil), e.Command...),
		StopSignal:        signalNamed(e.StopSignal),
		RebootExitCodes:   append([]int(nil), e.RebootExitCodes...),
		PoweroffExitCodes: append([]int(nil), e.PoweroffExitCodes...),
	}
	if e.Console == config.ExecConsolePTY {
		o.Console = exec.ConsolePTY
	}
	if len(e.Env) > 0 {
		o.Env = append([]string(nil), process.DefaultEnv...)
		keys := make([]string, 0, len(e.Env))
		for k := range e.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			o.Env = append(o.Env, k+"="+e.Env[k])
		}
	}
	return o
}

// bhyveOptions carries the bhyve switches only when the config sets them,
// so that the user's bhyve config file keeps its own values otherwise.
func bhyveOptions(c *config.VM) *bhyve.Options {
	o := &bhyve.Options{}
	if c.Bhyve != nil {
		o.Binary, o.Bhyvectl = c.Bhyve.Binary, c.Bhyve.Bhyvectl
		if c.Bhyve.Console == config.BhyveConsoleNMDM {
			o.Console = bhyve.ConsoleNMDM
		}
	}
	if c.IsSet("generate_acpi_tables") {
		o.GenerateACPITables = bhyve.Bool(c.GenerateACPITables)
	}
	if c.IsSet("vmexit_on_halt") {
		o.VMExitOnHalt = bhyve.Bool(c.VMExitOnHalt)
	}
	return o
}

// signalNamed maps a validated signal name ("SIGTERM") to its number.
func signalNamed(name string) syscall.Signal {
	if name == "" {
		return 0
	}
	return unix.SignalNum(name)
}
