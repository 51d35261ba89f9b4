package config

import (
	"maps"
	"time"

	"github.com/vmstated/vmstated/ucl"
)

// FileName is the name of the config file inside each VM directory.
const FileName = "config"

// Hypervisor names accepted by the hypervisor key.
const (
	HypervisorQEMU  = "qemu"
	HypervisorBhyve = "bhyve"
	HypervisorExec  = "exec"
)

// Action is what follows when the guest powers off, reboots or crashes
// (keys on_poweroff, on_reboot, on_crash).
type Action string

const (
	// ActionStop: tear the VM down (stopping, stop_storage, stop_network,
	// stopped) and leave it stopped.
	ActionStop Action = "stop"
	// ActionRestart: relaunch the hypervisor (restarting, restarted,
	// running); counts toward the maxrestart budget.
	ActionRestart Action = "restart"
	// ActionFail: tear the VM down and leave it in the failed state, so
	// that a crash is looked at before the VM runs again (on_crash only).
	ActionFail Action = "fail"
	// ActionSuspend: save the guest and leave the VM suspended, to be
	// restored when the host is up again (on_host_shutdown only).
	ActionSuspend Action = "suspend"
)

// Defaults that are the same on every host.
const (
	DefaultMaxRestart     = 3
	DefaultMaxRestartTime = 30 * time.Second
	DefaultStopTimeout    = 60 * time.Second
	DefaultHookTimeout    = 60 * time.Second
	DefaultLogMaxSizeMB   = 10
	DefaultLogMaxFiles    = 5
	// What follows a guest's poweroff, reboot and crash when on_poweroff,
	// on_reboot and on_crash are not set.
	DefaultOnPoweroff = ActionStop
	DefaultOnReboot   = ActionRestart
	DefaultOnCrash    = ActionRestart
	// DefaultQEMUMemoryMB and DefaultQEMUCPUs apply to hypervisor = qemu
	// when memory or cpus are not set; bhyve keeps its configfile's value.
	DefaultQEMUMemoryMB = 512
	DefaultQEMUCPUs     = 1

	DefaultQEMUBinary  = "qemu-system-x86_64"
	DefaultQEMUMachine = "q35"
	DefaultQEMUAccel   = "auto"
	DefaultQEMUVGA     = "none"
	DefaultQEMUVNC     = "off"
	// DefaultQEMUStopMethod is how a stop asks the guest to power off.
	DefaultQEMUStopMethod = "acpi"
	DefaultDiskFormat     = "raw"
	DefaultDiskIface      = "virtio"
	DefaultNICModel       = "virtio-net-pci"
	DefaultStopSignal     = "SIGTERM"
	DefaultBhyveBinary    = "/usr/sbin/bhyve"
	DefaultBhyvectl       = "/usr/sbin/bhyvectl"
	MaxNameLen            = 63
)

// VM is one VM's validated config with every default applied. A VM is
// shared (by snapshots and changes) and must not be modified.
type VM struct {
	// Name is the VM's name: the `name` key, else the file's tag, else
	// the directory's name.
	Name string `json:"name"`
	// Dir is the VM's directory (absolute); File is Dir/config.
	Dir  string `json:"dir"`
	File string `json:"file"`
	// Includes are the other files the config read through .include
	// (absolute paths), watched for changes like the config itself.
	Includes []string `json:"includes,omitempty"`

	// vmstated's keys.
	ConfigFile         string        `json:"configfile,omitempty"` // absolute
	ScriptPath         string        `json:"scriptpath"`           // absolute; default Dir
	OS                 string        `json:"os,omitempty"`
	OSVersion          string        `json:"osversion,omitempty"`
	Owner              string        `json:"owner,omitempty"`
	OwnerUID           int           `json:"owner_uid"` // -1 when owner is not set
	Group              string        `json:"group,omitempty"`
	GroupGID           int           `json:"group_gid"` // -1 when group is not set
	Description        string        `json:"description,omitempty"`
	MaxRestart         int           `json:"maxrestart"`
	MaxRestartTime     time.Duration `json:"maxrestarttime"`
	BootROM            string        `json:"bootrom,omitempty"`
	GenerateACPITables bool          `json:"generate_acpi_tables"`
	VMExitOnHalt       bool          `json:"vmexit_on_halt"`
	MemoryMB           int64         `json:"memory"` // 0: not set (bhyve keeps its configfile's value)
	CPUs               int           `json:"cpus"`   // 0: not set
	Sockets            int           `json:"sockets"`
	Cores              int           `json:"cores"`

	// vmstated(8) extensions of this daemon.
	Hypervisor   string                   `json:"hypervisor"`
	Autostart    bool                     `json:"autostart"`
	StopTimeout  time.Duration            `json:"stop_timeout"`
	HookTimeout  time.Duration            `json:"hook_timeout"`
	HookTimeouts map[string]time.Duration `json:"hook_timeouts,omitempty"`
	OnPoweroff   Action                   `json:"on_poweroff"`
	OnReboot     Action                   `json:"on_reboot"`
	OnCrash      Action                   `json:"on_crash"`
	// OnHostShutdown is what a host shutdown does to the VM: stop it, or
	// suspend it (QEMU only) so that it resumes when the host is up.
	OnHostShutdown Action   `json:"on_host_shutdown"`
	Depends        []string `json:"depends,omitempty"`
	LogMaxSizeMB   int64    `json:"log_max_size"`
	LogMaxFiles    int      `json:"log_max_files"`

	// Per-hypervisor sections: nil when absent from the file, except that
	// the section of the VM's own hypervisor is always present, with
	// defaults applied.
	QEMU  *QEMU  `json:"qemu,omitempty"`
	Exec  *Exec  `json:"exec,omitempty"`
	Bhyve *Bhyve `json:"bhyve,omitempty"`
	// CloudInit is the cloud_init section (QEMU only); nil when absent.
	CloudInit *CloudInit `json:"cloud_init,omitempty"`

	// Digest identifies the config's meaning (not its spelling): equal
	// digests mean nothing the daemon uses has changed, so comment and
	// formatting edits are no change.
	Digest string `json:"-"`
	// Warnings found while loading; the config is in use regardless.
	Warnings []Diagnostic `json:"-"`

	set       map[string]bool
	positions map[string]ucl.Pos // where each top-level key was written
	scalars   map[string]string
}

// QEMU holds the settings of the qemu section.
type QEMU struct {
	Binary    string   `json:"binary"`
	Machine   string   `json:"machine"`
	Accel     string   `json:"accel"` // auto | kvm | tcg
	CPU       string   `json:"cpu,omitempty"`
	VGA       string   `json:"vga"`
	VNC       string   `json:"vnc"` // off | unix | ":N" | "host:N"
	Serial    bool     `json:"serial"`
	Disks     []Disk   `json:"disks,omitempty"`
	CDROM     string   `json:"cdrom,omitempty"`
	NICs      []NIC    `json:"nics,omitempty"`
	ExtraArgs []string `json:"extra_args,omitempty"`
	// Kernel, Initrd and Append boot a kernel directly (QEMU's -kernel,
	// -initrd, -append) instead of from a disk.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// VNCPassword is asked of VNC clients (set through QMP).
	VNCPassword string `json:"vnc_password,omitempty"`
	// VNCPasswordAuto (vnc_password = auto) asks for a random password
	// the daemon makes up once and keeps.
	VNCPasswordAuto bool `json:"vnc_password_auto,omitempty"`
	// VNCListen is the address the daemon's VNC relay listens on (vnc =
	// auto); empty means 127.0.0.1.
	VNCListen string `json:"vnc_listen,omitempty"`
	User      string `json:"user,omitempty"` // QEMU drops to it (-runas)
	// GuestAgent adds the channel for qemu-guest-agent in the guest.
	GuestAgent bool `json:"guest_agent,omitempty"`
	// StopMethod is acpi (the power button) or agent (the guest agent
	// first, then the power button).
	StopMethod string `json:"stop_method"`
}

// Disk is one disk of a QEMU VM.
type Disk struct {
	Path      string `json:"path"`
	Format    string `json:"format"`
	Interface string `json:"interface"`
	Cache     string `json:"cache,omitempty"`
	ReadOnly  bool   `json:"readonly"`
}

// NIC types of the nic section's type key.
const (
	// NICUser is QEMU's built-in NAT.
	NICUser = "user"
	// NICTap is a tap device that exists or that hooks make.
	NICTap = "tap"
	// NICBridge is a tap the daemon makes and attaches to Bridge.
	NICBridge = "bridge"
	// NICLocal is a tap the daemon makes with a private /31 and a DHCP
	// server (vmctl start -L).
	NICLocal = "local"
)

// NIC is one network device of a QEMU VM.
type NIC struct {
	Type string `json:"type"` // user | tap | bridge | local
	// Ifname is the tap device; for bridge and local the daemon names it
	// when empty.
	Ifname string `json:"ifname,omitempty"`
	Bridge string `json:"bridge,omitempty"`
	Model  string `json:"model"`
	MAC    string `json:"mac,omitempty"`
	// NAT, Pool and DNS are for type local: masquerading, the prefix the
	// /31 comes from ("" = the default pool), and the name servers DHCP
	// hands out (empty = the host's).
	NAT  bool     `json:"nat,omitempty"`
	Pool string   `json:"pool,omitempty"`
	DNS  []string `json:"dns,omitempty"`
}

// Exec holds the settings of the exec section.
type Exec struct {
	Command           []string          `json:"command"`
	StopSignal        string            `json:"stop_signal"` // canonical "SIGTERM" form
	RebootExitCodes   []int             `json:"reboot_exit_codes,omitempty"`
	PoweroffExitCodes []int             `json:"poweroff_exit_codes"`
	Env               map[string]string `json:"env,omitempty"`
	Console           string            `json:"console,omitempty"` // ExecConsoleNone or ExecConsolePTY
}

// The values of exec.console.
const (
	// ExecConsoleNone: stdin is /dev/null, output goes to the log.
	ExecConsoleNone = "none"
	// ExecConsolePTY: the program's stdin, stdout and stderr are a
	// pseudo-terminal, the VM's console.
	ExecConsolePTY = "pty"
)

// CloudInit holds the cloud_init section: what goes on the VM's NoCloud
// seed image. Files are absolute paths; empty ones are generated.
type CloudInit struct {
	UserData          string   `json:"user_data,omitempty"`
	MetaData          string   `json:"meta_data,omitempty"`
	NetworkConfig     string   `json:"network_config,omitempty"`
	Hostname          string   `json:"hostname,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
}

// Bhyve holds the settings of the bhyve section.
type Bhyve struct {
	Binary   string `json:"binary"`
	Bhyvectl string `json:"bhyvectl"`
	Console  string `json:"console,omitempty"` // BhyveConsoleNone or BhyveConsoleNMDM
}

// The values of bhyve.console.
const (
	// BhyveConsoleNone leaves the guest's COM1 to the bhyve config file.
	BhyveConsoleNone = "none"
	// BhyveConsoleNMDM puts COM1 on a null-modem pair the daemon holds.
	BhyveConsoleNMDM = "nmdm"
)

// HookTimeoutFor returns how long the hook for state may run: its entry in
// hook_timeouts, else hook_timeout.
func (vm *VM) HookTimeoutFor(state string) time.Duration {
	if d, ok := vm.HookTimeouts[state]; ok {
		return d
	}
	return vm.HookTimeout
}

// IsSet reports whether key (lower case, top level) was written in the
// config file, as opposed to holding its default. The bhyve
// .generated file only carries the keys that were set.
func (vm *VM) IsSet(key string) bool { return vm.set[key] }

// Scalars returns the VM's top-level scalar settings as text, key ->
// value, for the hooks' VMSTATED_CFG_<KEY> variables. Known keys carry
// their effective value (defaults included; memory in MB, durations in
// whole seconds, booleans as true/false, depends as a space-separated
// list); keys this version does not know are passed on as written, so
// hook scripts can have settings of their own.
func (vm *VM) Scalars() map[string]string { return maps.Clone(vm.scalars) }
