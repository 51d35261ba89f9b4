package qemu

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

func richSpec() hypervisor.Spec {
	return hypervisor.Spec{
		Name:     "web,1",
		RunDir:   "/run/vmstated/web",
		MemoryMB: 2048,
		CPUs:     4, Sockets: 1, Cores: 2, Threads: 2,
		BootROM: "/usr/share/OVMF/OVMF.fd",
		Options: &Options{
			Accel:  "tcg",
			CPU:    "max",
			VGA:    "std",
			VNC:    "unix",
			Serial: true,
			Disks: []Disk{
				{Path: "/var/lib/vm/web.qcow2", Format: "qcow2", Cache: "none"},
				{Path: "/var/lib/vm/data,1.raw", Format: "raw", Interface: "scsi", ReadOnly: true},
				{Path: "/var/lib/vm/old.img", Interface: "ide"},
				{Path: "/var/lib/vm/spare.img", Interface: "none"},
			},
			CDROM: "/iso/install.iso",
			NICs: []NIC{
				{Type: "user"},
				{Type: "tap", Ifname: "tap-web", Bridge: "br0", Model: "e1000", MAC: "52:54:00:12:34:56"},
			},
			ExtraArgs: []string{"-device", "virtio-rng-pci"},
			Kernel:    "/boot/vmlinuz,1",
			Initrd:    "/boot/initrd.gz",
			Append:    "console=ttyS0 root=/dev/vda1,x",
		},
	}
}

func TestCommandLineRich(t *testing.T) {
	bin, args, err := CommandLine(richSpec())
	if err != nil {
		t.Fatal(err)
	}
	if bin != "qemu-system-x86_64" {
		t.Errorf("binary %q", bin)
	}
	want := []string{
		"-name", "guest=web,,1",
		"-machine", "q35,accel=tcg",
		"-m", "2048",
		"-smp", "4,sockets=1,cores=2,threads=2",
		"-cpu", "max",
		"-bios", "/usr/share/OVMF/OVMF.fd",
		"-kernel", "/boot/vmlinuz,1",
		"-initrd", "/boot/initrd.gz",
		"-append", "console=ttyS0 root=/dev/vda1,x",
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
	}
	want = append(want, sandboxWant("")...)
	want = append(want,
		"-vga", "std",
		"-vnc", "unix:/run/vmstated/web/vnc.sock",
		"-chardev", "socket,id=qmp,path=/run/vmstated/web/qmp.sock,server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=qmp-alt,path=/run/vmstated/web/qmp-alt.sock,server=on,wait=off",
		"-mon", "chardev=qmp-alt,mode=control",
		"-pidfile", "/run/vmstated/web/qemu.pid",
		"-chardev", "socket,id=serial0,path=/run/vmstated/web/serial.sock,server=on,wait=off,logfile=/run/vmstated/web/console.log,logappend=on",
		"-serial", "chardev:serial0",
		"-drive", "file=/var/lib/vm/web.qcow2,if=none,id=disk0,format=qcow2,cache=none",
		"-device", "virtio-blk-pci,drive=disk0",
		"-drive", "file=/var/lib/vm/data,,1.raw,if=none,id=disk1,format=raw,readonly=on",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-device", "scsi-hd,bus=scsi0.0,drive=disk1",
		"-drive", "file=/var/lib/vm/old.img,if=none,id=disk2",
		"-device", "ide-hd,drive=disk2,bus=ide.0",
		"-drive", "file=/var/lib/vm/spare.img,if=none,id=disk3",
		"-drive", "file=/iso/install.iso,if=none,id=cdrom0,media=cdrom,readonly=on",
		"-device", "ide-cd,drive=cdrom0,bus=ide.1",
		"-netdev", "user,id=net0",
		"-device", "virtio-net-pci,netdev=net0",
		"-netdev", "tap,id=net1,ifname=tap-web,script=no,downscript=no",
		"-device", "e1000,netdev=net1,mac=52:54:00:12:34:56",
		"-device", "virtio-rng-pci",
	)
	if strings.Join(args, "\n") != strings.Join(want, "\n") {
		t.Errorf("command line:\n got %q\nwant %q", args, want)
	}
}

func TestCommandLineMinimalAndConfigFile(t *testing.T) {
	spec := hypervisor.Spec{Name: "m", RunDir: "/r", Options: &Options{Accel: "tcg"}}
	_, args, err := CommandLine(spec)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	want := "-name guest=m -machine q35,accel=tcg -nodefaults -no-user-config -no-reboot -display none " +
		strings.Join(append(sandboxWant(""), ""), " ") +
		"-chardev socket,id=qmp,path=/r/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control " +
		"-chardev socket,id=qmp-alt,path=/r/qmp-alt.sock,server=on,wait=off -mon chardev=qmp-alt,mode=control -pidfile /r/qemu.pid"
	if got != want {
		t.Errorf("minimal:\n got %s\nwant %s", got, want)
	}

	spec.ConfigFile = "/etc/vmstated/m/qemu.cfg"
	spec.MemoryMB, spec.CPUs = 256, 2
	_, args, _ = CommandLine(spec)
	got = strings.Join(args, " ")
	if !strings.HasPrefix(got, "-name guest=m -readconfig /etc/vmstated/m/qemu.cfg.generated -nodefaults") {
		t.Errorf("with configfile: %s", got)
	}
	for _, s := range []string{"-machine", "-m ", "-smp"} {
		if strings.Contains(got, s) {
			t.Errorf("with configfile the command line still has %s: %s", s, got)
		}
	}
	secs := generatedSections(spec, Options{}.withDefaults(), "tcg")
	var b strings.Builder
	for _, s := range secs {
		b.WriteString("[" + s.Type + "]")
		for _, kv := range s.Settings {
			b.WriteString(" " + kv.Key + "=" + kv.Value)
		}
	}
	if b.String() != "[machine] type=q35 accel=tcg[memory] size=256[smp-opts] cpus=2" {
		t.Errorf("generated sections %s", b.String())
	}
}

func TestCommandLineVNC(t *testing.T) {
	for vnc, want := range map[string]string{
		"auto": "-vnc unix:/r/vnc.sock,password=on",
		"unix": "-vnc unix:/r/vnc.sock,password=on",
		":3":   "-vnc :3,password=on",
	} {
		_, args, err := CommandLine(hypervisor.Spec{Name: "m", RunDir: "/r", Options: &Options{Accel: "tcg", VNC: vnc, VNCPassword: "s3cret"}})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(args, " ")
		if !strings.Contains(got, want) || strings.Contains(got, "s3cret") {
			t.Errorf("vnc %s: %s; want %q and never the password", vnc, got, want)
		}
	}
}

func TestCommandLineGuestAgent(t *testing.T) {
	_, args, err := CommandLine(hypervisor.Spec{Name: "m", RunDir: "/r", Options: &Options{Accel: "tcg", GuestAgent: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := "-chardev socket,id=qga0,path=/r/qga.sock,server=on,wait=off -device virtio-serial-pci,id=qga-serial -device virtserialport,bus=qga-serial.0,chardev=qga0,name=org.qemu.guest_agent.0"
	if got := strings.Join(args, " "); !strings.Contains(got, want) {
		t.Errorf("guest agent: %s\nwant %s", got, want)
	}
	_, args, _ = CommandLine(hypervisor.Spec{Name: "m", RunDir: "/r", Options: &Options{Accel: "tcg"}})
	if got := strings.Join(args, " "); strings.Contains(got, "qga") || strings.Contains(got, "virtio-serial") {
		t.Errorf("without guest_agent: %s", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error; empty = valid
	}{
		{"defaults", Options{}, ""},
		{"bad accel", Options{Accel: "hvf"}, "accel \"hvf\""},
		{"bad vga", Options{VGA: "vmware"}, "vga"},
		{"vnc display", Options{VNC: "127.0.0.1:5"}, ""},
		{"vnc port only", Options{VNC: ":1"}, ""},
		{"bad vnc", Options{VNC: "yes"}, "vnc \"yes\""},
		{"machine with props", Options{Machine: "q35,smm=on"}, "machine"},
		{"disk without path", Options{Disks: []Disk{{}}}, "disk 1: path is empty"},
		{"disk interface", Options{Disks: []Disk{{Path: "/a", Interface: "sata"}}}, "interface \"sata\""},
		{"disk cache", Options{Disks: []Disk{{Path: "/a", Cache: "fast"}}}, "cache \"fast\""},
		{"tap without ifname", Options{NICs: []NIC{{Type: "tap"}}}, "needs ifname"},
		{"nic type missing", Options{NICs: []NIC{{}}}, "type is missing"},
		{"nic type", Options{NICs: []NIC{{Type: "bridge"}}}, "type \"bridge\""},
		{"bad mac", Options{NICs: []NIC{{Type: "user", MAC: "52:54:00"}}}, "mac"},
		{"daemonize", Options{ExtraArgs: []string{"-daemonize"}}, "-daemonize"},
		{"no-shutdown", Options{ExtraArgs: []string{"-no-shutdown"}}, "-no-shutdown"},
		{"paused start", Options{ExtraArgs: []string{"-S"}}, "-S"},
		{"two problems", Options{Accel: "x", VGA: "y"}, "vga"},
		{"direct boot", Options{Kernel: "/k", Initrd: "/i", Append: "console=ttyS0"}, ""},
		{"initrd without kernel", Options{Initrd: "/i"}, "need kernel"},
		{"append without kernel", Options{Append: "quiet"}, "need kernel"},
		{"append with newline", Options{Kernel: "/k", Append: "a\nb"}, "newline"},
		{"vnc auto", Options{VNC: "auto", VNCPassword: "s3cret"}, ""},
		{"password without vnc", Options{VNCPassword: "s3cret"}, "needs vnc"},
		{"long password", Options{VNC: "auto", VNCPassword: "123456789"}, "at most 8"},
		{"guest agent", Options{GuestAgent: true, StopMethod: StopAgent}, ""},
		{"agent stop without agent", Options{StopMethod: StopAgent}, "needs guest_agent"},
		{"bad stop method", Options{StopMethod: "signal"}, "stop_method \"signal\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestOptionsType(t *testing.T) {
	if _, _, err := CommandLine(hypervisor.Spec{Name: "x", RunDir: "/r", Options: 42}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("wrong Options type: %v", err)
	}
	if _, _, err := CommandLine(hypervisor.Spec{Name: "x", RunDir: "/r", Options: (*Options)(nil)}); err != nil {
		t.Errorf("nil *Options: %v", err)
	}
	if err := checkSocketPaths("/" + strings.Repeat("d", 100)); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("long run dir: %v", err)
	}
}

func TestClassify(t *testing.T) {
	sig := func(s string) *shutdownEvent { return &shutdownEvent{Reason: s} }
	exited0 := process.Status{Code: 0, Known: true}
	killed9 := process.Status{Code: -1, Signal: 9, Known: true}
	unknown := process.Status{Code: -1}
	tests := []struct {
		name     string
		sd       *shutdownEvent
		panicked bool
		killed   bool
		st       process.Status
		want     hypervisor.ExitReason
		code     int
		signal   string
	}{
		{"poweroff", sig("guest-shutdown"), false, false, exited0, hypervisor.ExitPoweroff, 0, ""},
		{"reboot", sig("guest-reset"), false, false, exited0, hypervisor.ExitReboot, 0, ""},
		{"host reset", sig("host-qmp-system-reset"), false, false, exited0, hypervisor.ExitReboot, 0, ""},
		{"guest panic reason", sig("guest-panic"), false, false, exited0, hypervisor.ExitCrash, 0, ""},
		{"panicked event", sig("guest-shutdown"), true, false, exited0, hypervisor.ExitCrash, 0, ""},
		{"qmp quit", sig("host-qmp-quit"), false, true, exited0, hypervisor.ExitKilled, 0, ""},
		{"host signal", sig("host-signal"), false, false, exited0, hypervisor.ExitKilled, 0, ""},
		{"host error", sig("host-error"), false, false, exited0, hypervisor.ExitCrash, 0, ""},
		{"our SIGKILL", nil, false, true, killed9, hypervisor.ExitKilled, -1, "SIGKILL"},
		{"foreign SIGKILL", nil, false, false, killed9, hypervisor.ExitCrash, -1, "SIGKILL"},
		{"re-adopted, no event", nil, false, false, unknown, hypervisor.ExitCrash, -1, ""},
		{"error exit", nil, false, false, process.Status{Code: 1, Known: true}, hypervisor.ExitCrash, 1, ""},
		{"clean exit, events dropped", nil, false, false, exited0, hypervisor.ExitPoweroff, 0, ""},
		{"error exit, events dropped", nil, false, false, process.Status{Code: 1, Known: true}, hypervisor.ExitCrash, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dropped uint64
			if strings.Contains(tt.name, "dropped") {
				dropped = 3
			}
			e := classify(tt.sd, tt.panicked, tt.killed, dropped, tt.st)
			if e.Reason != tt.want || e.Code != tt.code || e.Signal != tt.signal || e.Detail == "" {
				t.Errorf("got %+v, want %s code %d signal %q", e, tt.want, tt.code, tt.signal)
			}
		})
	}
}

// sandboxWant is what a root daemon adds to every command line.
func sandboxWant(user string) []string {
	if os.Geteuid() != 0 {
		return nil
	}
	if user == "" {
		return []string{"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}
	}
	return []string{"-sandbox", "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny", "-runas", user}
}

func TestSandboxArgs(t *testing.T) {
	spec := hypervisor.Spec{Name: "m", RunDir: "/r", Options: &Options{Accel: "tcg", User: "qemu", Sandbox: true}}
	_, args, err := CommandLine(spec)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	if !strings.Contains(got, "-sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny -runas qemu") {
		t.Errorf("with a user: %s", got)
	}
	if err := (Options{User: "a,b", Sandbox: true}).Validate(); err == nil {
		t.Error("a user with a comma passed")
	}
}
