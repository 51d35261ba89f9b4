package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/ucl"
)

// Bounds of numeric keys.
const (
	maxCPUs        = 1024
	maxMemoryMB    = 16 << 20 // 16 TiB
	maxRestarts    = 1000
	maxTimeout     = 24 * time.Hour
	maxRestartTime = 30 * 24 * time.Hour
	maxLogSizeMB   = 1 << 20
	maxLogFiles    = 1000
)

// HookStates are the states a hook can be named after; the keys of
// hook_timeouts must be among them.
var HookStates = []string{
	"stopped", "start_network", "start_storage", "running", "paused",
	"restarting", "restarted", "stopping", "stop_storage", "stop_network", "failed",
	"suspending", "suspended",
}

var topKeys map[string]fieldHandler

var topKeyNames []string

func init() {
	topKeys = map[string]fieldHandler{
		"name": {fn: func(d *decoder, k string, n *ucl.Node) {
			if s, ok := d.str(k, n); ok {
				if err := ValidateName(s); err != nil {
					d.errf(n.Pos, k, "%q: %v", s, err)
					return
				}
				d.vm.Name = s
			}
		}},
		"configfile": {fn: func(d *decoder, k string, n *ucl.Node) {
			if p, ok := d.path(k, n); ok && d.instructionFile(k, n, p) {
				d.vm.ConfigFile = p
			}
		}},
		"scriptpath": {fn: func(d *decoder, k string, n *ucl.Node) {
			p, ok := d.path(k, n)
			if !ok {
				return
			}
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				d.errf(n.Pos, k, "%s: %v; create the directory or fix the path", p, unwrapPathError(err))
			case !fi.IsDir():
				d.errf(n.Pos, k, "%s is not a directory; scriptpath names the directory that holds the hooks", p)
			default:
				d.vm.ScriptPath = p
			}
		}},
		"os":          {fn: textField(func(vm *VM) *string { return &vm.OS })},
		"osversion":   {fn: textField(func(vm *VM) *string { return &vm.OSVersion })},
		"description": {fn: textField(func(vm *VM) *string { return &vm.Description })},
		"owner": {fn: func(d *decoder, k string, n *ucl.Node) {
			if name, id, ok := d.account(k, n, false); ok {
				d.vm.Owner, d.vm.OwnerUID = name, id
			}
		}},
		"group": {fn: func(d *decoder, k string, n *ucl.Node) {
			if name, id, ok := d.account(k, n, true); ok {
				d.vm.Group, d.vm.GroupGID = name, id
			}
		}},
		"maxrestart": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.integer(k, n, 0, maxRestarts); ok {
				d.vm.MaxRestart = int(v)
			}
		}},
		"maxrestarttime": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.duration(k, n, time.Second, maxRestartTime); ok {
				d.vm.MaxRestartTime = v
			}
		}},
		"bootrom": {fn: func(d *decoder, k string, n *ucl.Node) {
			if p, ok := d.path(k, n); ok && d.readableFile(k, n, p) {
				d.vm.BootROM = p
			}
		}},
		"generate_acpi_tables": {fn: boolField(func(vm *VM) *bool { return &vm.GenerateACPITables })},
		"vmexit_on_halt":       {fn: boolField(func(vm *VM) *bool { return &vm.VMExitOnHalt })},
		"memory": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.sizeMB(k, n, 1, maxMemoryMB); ok {
				d.vm.MemoryMB = v
			}
		}},
		"cpus":    {fn: intField(1, maxCPUs, func(vm *VM) *int { return &vm.CPUs })},
		"sockets": {fn: intField(1, maxCPUs, func(vm *VM) *int { return &vm.Sockets })},
		"cores":   {fn: intField(1, maxCPUs, func(vm *VM) *int { return &vm.Cores })},
		"hypervisor": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.enum(k, n, HypervisorQEMU, HypervisorBhyve, HypervisorExec); ok {
				d.vm.Hypervisor = v
			}
		}},
		"autostart": {fn: boolField(func(vm *VM) *bool { return &vm.Autostart })},
		"stop_timeout": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.duration(k, n, time.Second, maxTimeout); ok {
				d.vm.StopTimeout = v
			}
		}},
		"hook_timeout": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.duration(k, n, time.Second, maxTimeout); ok {
				d.vm.HookTimeout = v
			}
		}},
		"hook_timeouts":    {fn: (*decoder).hookTimeouts},
		"on_poweroff":      {fn: actionField(func(vm *VM) *Action { return &vm.OnPoweroff }, ActionStop, ActionRestart)},
		"on_reboot":        {fn: actionField(func(vm *VM) *Action { return &vm.OnReboot }, ActionStop, ActionRestart)},
		"on_crash":         {fn: actionField(func(vm *VM) *Action { return &vm.OnCrash }, ActionStop, ActionRestart, ActionFail)},
		"on_host_shutdown": {fn: actionField(func(vm *VM) *Action { return &vm.OnHostShutdown }, ActionStop, ActionSuspend)},
		"depends": {fn: func(d *decoder, k string, n *ucl.Node) {
			list, ok := d.stringList(k, n, true, `[ "db", "dns" ]`)
			if !ok {
				return
			}
			for _, dep := range list {
				if err := ValidateName(dep); err != nil {
					d.errf(n.Pos, k, "%q is not a VM name: %v", dep, err)
					return
				}
				if !containsString(d.vm.Depends, dep) {
					d.vm.Depends = append(d.vm.Depends, dep)
				}
			}
		}},
		"log_max_size": {fn: func(d *decoder, k string, n *ucl.Node) {
			if v, ok := d.sizeMB(k, n, 1, maxLogSizeMB); ok {
				d.vm.LogMaxSizeMB = v
			}
		}},
		"log_max_files": {fn: intField(0, maxLogFiles, func(vm *VM) *int { return &vm.LogMaxFiles })},
		"qemu":          {fn: (*decoder).qemuSection},
		"exec":          {fn: (*decoder).execSection},
		"bhyve":         {fn: (*decoder).bhyveSection},
		"cloud_init":    {fn: (*decoder).cloudInitSection},
	}
	topKeyNames = sortedKeys(topKeys)
}

func textField(field func(*VM) *string) func(*decoder, string, *ucl.Node) {
	return func(d *decoder, k string, n *ucl.Node) {
		if s, ok := d.text(k, n); ok {
			if r := controlChar(s); r >= 0 {
				d.errf(n.Pos, k, "holds the control character %q; write it on one line of printable text", r)
				return
			}
			*field(d.vm) = s
		}
	}
}

func boolField(field func(*VM) *bool) func(*decoder, string, *ucl.Node) {
	return func(d *decoder, k string, n *ucl.Node) {
		if b, ok := d.boolean(k, n); ok {
			*field(d.vm) = b
		}
	}
}

func intField(lo, hi int64, field func(*VM) *int) func(*decoder, string, *ucl.Node) {
	return func(d *decoder, k string, n *ucl.Node) {
		if v, ok := d.integer(k, n, lo, hi); ok {
			*field(d.vm) = int(v)
		}
	}
}

func actionField(field func(*VM) *Action, allowed ...Action) func(*decoder, string, *ucl.Node) {
	words := make([]string, len(allowed))
	for i, a := range allowed {
		words[i] = string(a)
	}
	return func(d *decoder, k string, n *ucl.Node) {
		if v, ok := d.enum(k, n, words...); ok {
			*field(d.vm) = Action(v)
		}
	}
}

func (d *decoder) hookTimeouts(key string, n *ucl.Node) {
	if n.Kind != ucl.Object {
		d.errf(n.Pos, key, "must be a section, not %s; write hook_timeouts { start_storage = 300s; }", describe(n))
		return
	}
	d.vm.HookTimeouts = map[string]time.Duration{}
	for _, f := range n.Fields {
		k := key + "." + f.Key
		if !containsString(HookStates, f.Key) {
			d.unknownKey(f, key+".", HookStates)
			continue
		}
		if !d.checkSingle(k, f.Value) {
			continue
		}
		if v, ok := d.duration(k, f.Value, time.Second, maxTimeout); ok {
			d.vm.HookTimeouts[f.Key] = v
		}
	}
}

// section checks that n is a single section.
func (d *decoder) section(key string, n *ucl.Node, example string) bool {
	if n.Kind == ucl.Object {
		return true
	}
	if n.Kind == ucl.Array && n.Implicit && len(n.Items) > 0 {
		d.errf(n.Items[len(n.Items)-1].Pos, key, "section given %d times; merge them into one", len(n.Items))
		return false
	}
	d.errf(n.Pos, key, "must be a section, not %s; write %s", describe(n), example)
	return false
}

// sectionFields walks a section's fields, warning about unknown keys and
// rejecting repeated ones, and calls fn for each known key.
func (d *decoder) sectionFields(prefix string, n *ucl.Node, known []string, repeatable map[string]bool, fn func(key, full string, v *ucl.Node)) {
	for _, f := range n.Fields {
		full := prefix + "." + f.Key
		if !containsString(known, f.Key) {
			d.unknownKey(f, prefix+".", known)
			continue
		}
		if !repeatable[f.Key] && !d.checkSingle(full, f.Value) {
			continue
		}
		if f.Value.Kind == ucl.Null {
			d.errf(f.Value.Pos, full, "has no value (null); remove the line to get the default")
			continue
		}
		fn(f.Key, full, f.Value)
	}
}

var qemuKeys = []string{"binary", "machine", "accel", "cpu", "vga", "vnc", "serial", "disk", "cdrom", "nic", "extra_args", "user", "kernel", "initrd", "append", "vnc_password", "vnc_listen", "guest_agent", "stop_method"}

func (q *QEMU) applyDefaults() {
	if q.Binary == "" {
		q.Binary = DefaultQEMUBinary
	}
	if q.Machine == "" {
		q.Machine = DefaultQEMUMachine
	}
	if q.Accel == "" {
		q.Accel = DefaultQEMUAccel
	}
	if q.VGA == "" {
		q.VGA = DefaultQEMUVGA
	}
	if q.VNC == "" {
		q.VNC = DefaultQEMUVNC
	}
	if q.StopMethod == "" {
		q.StopMethod = DefaultQEMUStopMethod
	}
}

var vncDisplay = regexp.MustCompile(`^([A-Za-z0-9.\-]*|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$`)

func (d *decoder) qemuSection(key string, n *ucl.Node) {
	if !d.section(key, n, "qemu { machine = q35; }") {
		return
	}
	q := &QEMU{Serial: true}
	d.sectionFields(key, n, qemuKeys, map[string]bool{"disk": true, "nic": true}, func(k, full string, v *ucl.Node) {
		switch k {
		case "binary":
			q.Binary, _ = d.str(full, v)
		case "user":
			q.User, _ = d.runAs(full, v)
		case "machine":
			q.Machine, _ = d.str(full, v)
		case "cpu":
			q.CPU, _ = d.str(full, v)
		case "accel":
			q.Accel, _ = d.enum(full, v, "auto", "kvm", "tcg")
		case "vga":
			q.VGA, _ = d.enum(full, v, "none", "std", "virtio", "qxl", "cirrus")
		case "vnc":
			q.VNC, _ = d.vnc(full, v)
		case "serial":
			q.Serial, _ = d.boolean(full, v)
		case "cdrom":
			q.CDROM, _ = d.path(full, v)
		case "extra_args":
			q.ExtraArgs, _ = d.stringList(full, v, false, `[ "-device", "virtio-rng-pci" ]`)
		case "kernel":
			if p, ok := d.path(full, v); ok && d.readableFile(full, v, p) {
				q.Kernel = p
			}
		case "initrd":
			if p, ok := d.path(full, v); ok && d.readableFile(full, v, p) {
				q.Initrd = p
			}
		case "vnc_listen":
			if s, ok := d.str(full, v); ok {
				if net.ParseIP(s) == nil {
					d.errf(v.Pos, full, "%q is not an IP address; write the address of the host's interface to listen on, such as 127.0.0.1 (the default) or ::1", s)
				} else {
					q.VNCListen = s
				}
			}
		case "guest_agent":
			q.GuestAgent, _ = d.boolean(full, v)
		case "stop_method":
			q.StopMethod, _ = d.enum(full, v, "acpi", "agent")
		case "vnc_password":
			if s, ok := d.str(full, v); ok {
				if s == "auto" {
					// Made up by the daemon, kept in its state record.
					q.VNCPasswordAuto = true
				} else if len(s) > 8 || strings.ContainsAny(s, "\n\x00") {
					d.errf(v.Pos, full, "VNC passwords are at most 8 characters on one line (the VNC protocol uses only 8)")
				} else {
					q.VNCPassword = s
				}
			}
		case "append":
			if s, ok := d.str(full, v); ok {
				if strings.ContainsAny(s, "\n\x00") {
					d.errf(v.Pos, full, "contains a newline or NUL; the kernel command line is one line")
				} else {
					q.Append = s
				}
			}
		case "disk":
			for _, it := range d.sectionList(full, v, "disk { path = /var/lib/vm/disk.img; }") {
				if disk, ok := d.disk(full, it); ok {
					q.Disks = append(q.Disks, disk)
				}
			}
		case "nic":
			seen := map[string]bool{}
			for _, it := range d.sectionList(full, v, "nic { type = user; }") {
				nic, ok := d.nic(full, it)
				if ok && nic.Ifname != "" && seen[nic.Ifname] {
					d.errf(it.Pos, full+".ifname", "%s is the ifname of another nic of this VM; give each its own", nic.Ifname)
					ok = false
				}
				if ok {
					seen[nic.Ifname] = true
					q.NICs = append(q.NICs, nic)
				}
			}
		}
	})
	if q.VNCListen != "" && q.VNC != "auto" {
		d.errf(n.Pos, key+".vnc_listen", "needs vnc = auto (the daemon listens only for the VNC it relays)")
	}
	if q.StopMethod == "agent" && !q.GuestAgent {
		d.errf(n.Pos, key+".stop_method", "agent needs guest_agent = true (the channel the request goes through); add it, or write stop_method = acpi")
	}
	if (q.VNCPassword != "" || q.VNCPasswordAuto) && (q.VNC == "" || q.VNC == "off") {
		d.errf(n.Pos, key+".vnc_password", "needs vnc (auto, unix or a display); without it there is no VNC server to protect")
	}
	// Without a kernel QEMU boots from a disk, and an initrd or command
	// line would be silently ignored.
	if q.Kernel == "" {
		for k, set := range map[string]bool{"initrd": q.Initrd != "", "append": q.Append != ""} {
			if set {
				d.errf(n.Pos, key+"."+k, "needs kernel (direct kernel boot); add kernel = /path/to/vmlinuz; or remove %s", k)
			}
		}
	}
	q.applyDefaults()
	d.vm.QEMU = q
}

// sectionList returns the sections of a repeatable key: one section, the
// same key repeated, or a list of sections.
func (d *decoder) sectionList(key string, n *ucl.Node, example string) []*ucl.Node {
	if n.Kind == ucl.Object {
		return []*ucl.Node{n}
	}
	if n.Kind == ucl.Array {
		var out []*ucl.Node
		for _, it := range n.Items {
			if it.Kind != ucl.Object {
				d.errf(it.Pos, key, "must be a section, not %s; write %s", describe(it), example)
				continue
			}
			out = append(out, it)
		}
		return out
	}
	d.errf(n.Pos, key, "must be a section, not %s; write %s", describe(n), example)
	return nil
}

func (d *decoder) vnc(key string, n *ucl.Node) (string, bool) {
	if n.Kind == ucl.Bool {
		// vnc = off / on: UCL reads the words as booleans.
		if n.Bool {
			return "unix", true
		}
		return "off", true
	}
	s, ok := d.str(key, n)
	if !ok {
		return "", false
	}
	ls := strings.ToLower(s)
	if ls == "off" || ls == "none" || ls == "unix" || ls == "auto" {
		if ls == "none" {
			ls = "off"
		}
		return ls, true
	}
	if m := vncDisplay.FindStringSubmatch(s); m != nil {
		if disp, _ := strconv.Atoi(m[2]); disp <= 65535-5900 {
			return s, true
		}
	}
	d.errf(n.Pos, key, "%q is not a VNC setting; write off, auto (the daemon relays a TCP port on 127.0.0.1), unix (a socket in the run directory), \":N\" or \"host:N\" (display N = TCP port 5900+N), quoted", s)
	return "", false
}

var diskKeys = []string{"path", "format", "interface", "cache", "readonly"}

func (d *decoder) disk(key string, n *ucl.Node) (Disk, bool) {
	disk := Disk{Format: DefaultDiskFormat, Interface: DefaultDiskIface}
	ok := true
	d.sectionFields(key, n, diskKeys, nil, func(k, full string, v *ucl.Node) {
		var good bool
		switch k {
		case "path":
			// Not checked for existence: a start_storage hook may
			// create or attach it.
			disk.Path, good = d.path(full, v)
		case "format":
			disk.Format, good = d.enum(full, v, "raw", "qcow2", "qed", "vmdk", "vdi", "vhdx", "vpc")
		case "interface":
			disk.Interface, good = d.enum(full, v, "virtio", "ide", "scsi", "none")
		case "cache":
			disk.Cache, good = d.enum(full, v, "none", "writeback", "writethrough", "directsync", "unsafe")
		case "readonly":
			disk.ReadOnly, good = d.boolean(full, v)
		}
		ok = ok && good
	})
	if disk.Path == "" && ok {
		d.errf(n.Pos, key, "needs a path: disk { path = /var/lib/vm/disk.img; }")
		ok = false
	}
	return disk, ok
}

var nicKeys = []string{"type", "ifname", "bridge", "model", "mac", "nat", "pool", "dns"}

func (d *decoder) nic(key string, n *ucl.Node) (NIC, bool) {
	nic := NIC{Model: DefaultNICModel}
	ok := true
	local := map[string]ucl.Pos{} // keys only type local takes
	d.sectionFields(key, n, nicKeys, nil, func(k, full string, v *ucl.Node) {
		var good bool
		switch k {
		case "type":
			nic.Type, good = d.enum(full, v, NICUser, NICTap, NICBridge, NICLocal)
		case "ifname":
			if nic.Ifname, good = d.str(full, v); good {
				if err := validIfname(nic.Ifname); err != nil {
					d.errf(v.Pos, full, "%q: %v", nic.Ifname, err)
					good = false
				}
			}
		case "bridge":
			if nic.Bridge, good = d.str(full, v); good {
				if err := validIfname(nic.Bridge); err != nil {
					d.errf(v.Pos, full, "%q: %v", nic.Bridge, err)
					good = false
				}
			}
		case "model":
			nic.Model, good = d.str(full, v)
		case "nat":
			nic.NAT, good = d.boolean(full, v)
			local["nat"] = v.Pos
		case "pool":
			var s string
			if s, good = d.str(full, v); good {
				p, err := netip.ParsePrefix(s)
				switch {
				case err != nil || !p.Addr().Is4():
					d.errf(v.Pos, full, "%q is not an IPv4 prefix; write one such as 100.64.0.0/10 (the default)", s)
					good = false
				case p.Bits() > 31:
					d.errf(v.Pos, full, "%s holds no /31; give a prefix of /31 or larger, such as 100.64.0.0/10", s)
					good = false
				case unusablePool(p) != "":
					d.errf(v.Pos, full, "%s overlaps %s, which a tap and a guest cannot use; give a private prefix such as 100.64.0.0/10 (the default) or 10.200.0.0/16", s, unusablePool(p))
					good = false
				default:
					nic.Pool = p.Masked().String()
				}
			}
			local["pool"] = v.Pos
		case "dns":
			var list []string
			if list, good = d.stringList(full, v, true, `[ "192.0.2.53" ]`); good {
				for _, s := range list {
					a, err := netip.ParseAddr(s)
					if err != nil || !a.Is4() {
						d.errf(v.Pos, full, "%q is not an IPv4 address; list the name servers the guest is to use, such as [ \"192.0.2.53\" ]", s)
						good = false
						break
					}
					nic.DNS = append(nic.DNS, a.String())
				}
			}
			local["dns"] = v.Pos
		case "mac":
			var s string
			if s, good = d.str(full, v); good {
				hw, err := net.ParseMAC(s)
				if err != nil || len(hw) != 6 {
					d.errf(v.Pos, full, "%q is not a MAC address; write six hex pairs: 52:54:00:12:34:56", s)
					good = false
				} else if hw[0]&1 == 1 {
					d.errf(v.Pos, full, "%s is a multicast address (the first byte is odd); use a unicast one such as 52:54:00:...", hw)
					good = false
				} else {
					nic.MAC = hw.String()
				}
			}
		}
		ok = ok && good
	})
	if !ok {
		return nic, false
	}
	if nic.Type != NICLocal {
		for _, k := range sortedKeys(local) {
			d.errf(local[k], key+"."+k, "is for nic { type = local; } only (the daemon's own /31 and DHCP); remove it or use type local")
			ok = false
		}
		if !ok {
			return nic, false
		}
	}
	switch nic.Type {
	case "":
		d.errf(n.Pos, key, "needs a type: nic { type = user; }, nic { type = local; }, nic { type = bridge; bridge = br0; } or nic { type = tap; ifname = tap0; }")
		return nic, false
	case NICTap:
		if nic.Ifname == "" {
			d.errf(n.Pos, key, "type tap needs ifname = tapN (the host interface to attach)")
			return nic, false
		}
	case NICBridge:
		if nic.Bridge == "" {
			d.errf(n.Pos, key, "type bridge needs bridge = br0 (the bridge the daemon attaches the VM's tap to)")
			return nic, false
		}
	case NICLocal:
		if nic.Bridge != "" {
			d.errf(n.Pos, key+".bridge", "type local joins no bridge (the tap gets its own /31); remove bridge or use type bridge")
			return nic, false
		}
	case NICUser:
		if nic.Ifname != "" || nic.Bridge != "" {
			d.warnf(n.Pos, key, "ifname and bridge have no effect with type user")
		}
	}
	return nic, true
}

// unusablePool names the special-purpose range p overlaps that no tap
// address and no guest could have ("this network", loopback, link-local,
// multicast, the reserved block and the broadcast address); empty when
// it overlaps none.
func unusablePool(p netip.Prefix) string {
	for _, r := range []string{"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"} {
		if netip.MustParsePrefix(r).Overlaps(p) {
			return r
		}
	}
	return ""
}

// validIfname applies the rules both Linux and FreeBSD put on interface
// names.
func validIfname(s string) error {
	if len(s) > 15 {
		return fmt.Errorf("interface names have at most 15 characters")
	}
	for _, c := range s {
		if c <= ' ' || c == '/' || c == ':' || c > '~' {
			return fmt.Errorf("interface names cannot contain %q", c)
		}
	}
	return nil
}

var execKeys = []string{"command", "stop_signal", "reboot_exit_codes", "poweroff_exit_codes", "env", "console"}

func (d *decoder) execSection(key string, n *ucl.Node) {
	if !d.section(key, n, `exec { command = [ "/path/to/program", "arg" ]; }`) {
		return
	}
	e := &Exec{StopSignal: DefaultStopSignal}
	poweroffSet, commandSet := false, false
	d.sectionFields(key, n, execKeys, nil, func(k, full string, v *ucl.Node) {
		switch k {
		case "command":
			commandSet = true
			if v.Kind == ucl.String {
				d.errf(v.Pos, full, "must be a list of words so that nothing is split wrongly; write command = [ %q ];", v.Str)
				return
			}
			cmd, ok := d.stringList(full, v, false, `[ "/path/to/program", "arg" ]`)
			if ok && (len(cmd) == 0 || cmd[0] == "") {
				d.errf(v.Pos, full, "is empty; name the program to run: command = [ \"/path/to/program\" ];")
				ok = false
			}
			if ok {
				e.Command = cmd
			}
		case "stop_signal":
			if s, ok := d.signal(full, v); ok {
				e.StopSignal = s
			}
		case "reboot_exit_codes":
			e.RebootExitCodes, _ = d.intList(full, v, 0, 255)
		case "poweroff_exit_codes":
			e.PoweroffExitCodes, _ = d.intList(full, v, 0, 255)
			poweroffSet = true
		case "console":
			if c, ok := d.enum(full, v, ExecConsoleNone, ExecConsolePTY); ok {
				e.Console = c
			}
		case "env":
			if v.Kind != ucl.Object {
				d.errf(v.Pos, full, "must be a section, not %s; write env { NAME = value; }", describe(v))
				return
			}
			e.Env = map[string]string{}
			for _, f := range v.Fields {
				// Keys are read case-insensitively (lowered); the
				// environment's names are upper case by custom.
				name := strings.ToUpper(f.Key)
				if !validEnvName(name) {
					d.errf(f.KeyPos, full+"."+f.Key, "is not a valid environment variable name (letters, digits, _; not starting with a digit)")
					continue
				}
				if s, ok := d.text(full+"."+f.Key, f.Value); ok {
					e.Env[name] = s
				}
			}
		}
	})
	if !poweroffSet {
		e.PoweroffExitCodes = []int{0}
	}
	for _, c := range e.RebootExitCodes {
		if containsInt(e.PoweroffExitCodes, c) {
			d.errf(n.Pos, key+".reboot_exit_codes", "exit code %d is in both reboot_exit_codes and poweroff_exit_codes; keep it in one", c)
		}
	}
	if !commandSet {
		d.errf(n.Pos, key+".command", "is required: exec { command = [ \"/path/to/program\", \"arg\" ]; }")
	}
	d.vm.Exec = e
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c == '_' || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

var bhyveKeys = []string{"binary", "bhyvectl", "console"}

func (b *Bhyve) applyDefaults() {
	if b.Binary == "" {
		b.Binary = DefaultBhyveBinary
	}
	if b.Bhyvectl == "" {
		b.Bhyvectl = DefaultBhyvectl
	}
}

func (d *decoder) bhyveSection(key string, n *ucl.Node) {
	if !d.section(key, n, "bhyve { binary = /usr/sbin/bhyve; }") {
		return
	}
	b := &Bhyve{}
	d.sectionFields(key, n, bhyveKeys, nil, func(k, full string, v *ucl.Node) {
		switch k {
		case "binary":
			b.Binary, _ = d.path(full, v)
		case "bhyvectl":
			b.Bhyvectl, _ = d.path(full, v)
		case "console":
			if c, ok := d.enum(full, v, BhyveConsoleNone, BhyveConsoleNMDM); ok {
				b.Console = c
			}
		}
	})
	b.applyDefaults()
	d.vm.Bhyve = b
}

var cloudInitKeys = []string{"user_data", "meta_data", "network_config", "hostname", "ssh_authorized_keys"}

// hostnameRE is RFC 1123: dot-separated labels of letters, digits and
// inner hyphens.
var hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// cloudInitSection reads the cloud_init section. The files must be
// readable now (so that a typo shows at load, with its position); their
// contents are read when the seed is built, before each start, so that an
// edit reaches the next boot.
func (d *decoder) cloudInitSection(key string, n *ucl.Node) {
	if !d.section(key, n, "cloud_init { user_data = user-data.yaml; }") {
		return
	}
	c := &CloudInit{}
	ok := true
	pos := map[string]ucl.Pos{}
	d.sectionFields(key, n, cloudInitKeys, nil, func(k, full string, v *ucl.Node) {
		pos[k] = v.Pos
		switch k {
		case "user_data", "meta_data", "network_config":
			p, good := d.path(full, v)
			if good = good && d.readableFile(full, v, p); !good {
				ok = false
				return
			}
			switch k {
			case "user_data":
				c.UserData = p
			case "meta_data":
				c.MetaData = p
			default:
				c.NetworkConfig = p
			}
		case "hostname":
			h, good := d.str(full, v)
			if good && (len(h) > 253 || !hostnameRE.MatchString(h)) {
				d.errf(v.Pos, full, "%q is not a host name: letters, digits and hyphens, in dot-separated parts", h)
				good = false
			}
			c.Hostname = h
			ok = ok && good
		case "ssh_authorized_keys":
			keys, good := d.stringList(full, v, true, `[ "ssh-ed25519 AAAA... user@host" ]`)
			for _, sk := range keys {
				if strings.TrimSpace(sk) == "" || strings.ContainsAny(sk, "\r\n") {
					d.errf(v.Pos, full, "each key is one non-empty line of an authorized_keys file")
					good = false
					break
				}
			}
			c.SSHAuthorizedKeys = keys
			ok = ok && good
		}
	})
	// The generated meta-data and user-data carry these keys; a file of
	// the user's replaces the generated one, so both would lose one.
	if c.MetaData != "" && c.Hostname != "" {
		d.errf(pos["hostname"], key+".hostname", "has no effect next to meta_data; put local-hostname: %s in %s instead", c.Hostname, c.MetaData)
		ok = false
	}
	if c.UserData != "" && len(c.SSHAuthorizedKeys) > 0 {
		d.errf(pos["ssh_authorized_keys"], key+".ssh_authorized_keys", "has no effect next to user_data; list the keys under ssh_authorized_keys: in %s instead", c.UserData)
		ok = false
	}
	if ok {
		d.vm.CloudInit = c
	}
}

// account reads owner or group: a name that must exist on this host, or
// a numeric id.
func (d *decoder) account(key string, n *ucl.Node, group bool) (string, int, bool) {
	var s string
	switch n.Kind {
	case ucl.Int:
		s = strconv.FormatInt(n.Int, 10)
	case ucl.String:
		s = strings.TrimSpace(n.Str)
	default:
		d.errf(n.Pos, key, "must be a user or group name or a numeric id, not %s", describe(n))
		return "", 0, false
	}
	id, err := d.ids.lookup(s, group)
	if err != nil {
		d.errf(n.Pos, key, "%v", err)
		return "", 0, false
	}
	return s, id, true
}

// runAs reads the account QEMU drops to: a user name that exists here
// (QEMU's -runas takes a name).
func (d *decoder) runAs(key string, n *ucl.Node) (string, bool) {
	if n.Kind != ucl.String {
		d.errf(n.Pos, key, "must be a user name, not %s: QEMU drops to the account by its name", describe(n))
		return "", false
	}
	s, ok := d.str(key, n)
	if !ok {
		return "", false
	}
	if _, err := d.ids.lookup(s, false); err != nil {
		d.errf(n.Pos, key, "%v", err)
		return "", false
	}
	if strings.ContainsAny(s, ", :") || s[0] >= '0' && s[0] <= '9' {
		d.errf(n.Pos, key, "%q: give the account's name, as QEMU's -runas takes it", s)
		return "", false
	}
	return s, true
}

// idCache remembers user and group look-ups for one load of the root.
type idCache struct {
	mu sync.Mutex
	m  map[string]idResult
}

type idResult struct {
	id  int
	err error
}

func newIDCache() *idCache { return &idCache{m: map[string]idResult{}} }

func (c *idCache) lookup(s string, group bool) (int, error) {
	k := "u:" + s
	if group {
		k = "g:" + s
	}
	c.mu.Lock()
	r, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return r.id, r.err
	}
	r.id, r.err = lookupID(s, group)
	c.mu.Lock()
	c.m[k] = r
	c.mu.Unlock()
	return r.id, r.err
}

func lookupID(s string, group bool) (int, error) {
	what := "user"
	if group {
		what = "group"
	}
	if s == "" {
		return 0, fmt.Errorf("is empty; name a %s of this host", what)
	}
	if n, err := strconv.Atoi(s); err == nil {
		// A numeric id needs no entry in the account database.
		if n < 0 || n > 1<<31-2 {
			return 0, fmt.Errorf("%s id %d is out of range", what, n)
		}
		return n, nil
	}
	var idText string
	if group {
		g, err := user.LookupGroup(s)
		if err != nil {
			return 0, fmt.Errorf("no group %q on this host (%v); create it or fix the name", s, err)
		}
		idText = g.Gid
	} else {
		u, err := user.Lookup(s)
		if err != nil {
			return 0, fmt.Errorf("no user %q on this host (%v); create it or fix the name", s, err)
		}
		idText = u.Uid
	}
	id, err := strconv.Atoi(idText)
	if err != nil {
		return 0, fmt.Errorf("%s %q has the non-numeric id %q", what, s, idText)
	}
	return id, nil
}

// DaemonLogName is the name no VM may have: the daemon's own log is
// <logdir>/vmstated.log, beside each VM's <logdir>/<name>.log, and a VM of
// that name would share the file with it (two rotators on one file).
const DaemonLogName = "vmstated"

// ValidateName checks a VM name against OpenBSD vmctl's rule: letters,
// digits, '.', '-' and '_', starting with a letter, at most MaxNameLen
// characters. Such names are safe in file names and on command lines.
// DaemonLogName is reserved.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("a VM name cannot be empty")
	}
	if name == DaemonLogName {
		return fmt.Errorf("the VM name %q is reserved: the daemon's own log is %s.log in the log directory; choose another name", name, DaemonLogName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("a VM name has at most %d characters, this one has %d", MaxNameLen, len(name))
	}
	c := name[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return fmt.Errorf("a VM name must start with a letter")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("a VM name may hold only letters, digits, '.', '-' and '_', not %q", rune(c))
		}
	}
	return nil
}
