// Package config loads, validates and watches vmstated's VM configs.
//
// # Layout
//
// The config root (default /etc/vmstated, /usr/local/etc/vmstated on
// FreeBSD; -c changes it) holds one directory per VM. Each holds a file
// named config, in UCL (the language of libucl), read with macros on
// (.include, .priority, ...) and with keys case-insensitive, as
// vmstated(8) reads it. The same directory holds the VM's hook scripts.
// Entries of the root that are not VM directories are ignored and logged
// at debug level: plain files, directories without a config file, hidden
// entries (starting with a dot) and editor or package-manager leftovers
// (name~, #name#, *.swp, *.tmp, *.bak, *.orig, *.rej, *.old, *.rpmnew,
// *.rpmsave, *.dpkg-*, *.pkgsave, *.pkgnew).
//
// # File form
//
// vmstated's form is one section whose key is the VM's name:
//
//	bsdvm {
//	    configfile = /usr/local/etc/vmstated/bsdvm/bhyve_config;
//	}
//
// The VM's name is that key, unless a name key is set. A file of plain
// keys, without the enclosing section, is also accepted; the name is then
// the directory's name (or the name key). Because keys are
// case-insensitive, the section key is read in lower case: write
// name = MyVM to keep capitals. A section key cannot be one of the key
// names below (a file holding only qemu { ... } is a plain file with a
// qemu section).
//
// A file holding a VM section and settings outside it is an error (one
// or the other would be lost); so is a file defining several VMs.
//
// A VM name has 1 to 63 characters: letters, digits, '.', '-' and '_',
// starting with a letter (OpenBSD vmctl's rule), so it is safe in file
// names and on command lines. Names are unique across the root: two
// directories with the same name are both errors, each naming the other.
//
// # Values
//
// Durations are UCL time values (30s, 5min, 1.5h, 1d) or plain numbers of
// seconds (30). Beware that in UCL a bare m means mega, not minutes:
// 10m is 10000000; write 10min. UCL reads a value whose suffix is followed
// by a space, as in `stop_timeout = 30s ;`, as the string "30s"; such a
// string, and any quoted duration ("90s", "5m", "1m30s", "2 min"), is read
// as the duration a person means.
//
// Sizes are megabytes or a size with a unit, following bhyve's rule that
// vmstated inherits: a plain number below 1048576 is megabytes, a number
// at or above it is bytes, rounded to whole MiB (with a warning when that
// is not exact). UCL's unit suffixes give bytes: 2GB and 512MB are binary
// (2 GiB, 512 MiB), while 2G, 512M and 4k are decimal (2G is 2000000000
// bytes, 1907 MiB, and gets a warning saying to write 2GB). A quoted size
// means what a person means, with binary units: "2G", "2GiB", "2GB",
// "512M", "1.5G", "2048" (megabytes).
//
// Booleans are true/false, yes/no or on/off, in any case, quoted or not.
// Paths that are not absolute are relative to the VM's directory. Every
// key appears at most once, except disk and nic in the qemu section.
//
// # Checks
//
// Loading is strict: a wrong type, a value out of range, an unknown
// hypervisor, a configfile or bootrom that is missing or unreadable, an
// owner or group that does not exist on the host, a depends naming a VM
// that does not exist or forming a cycle, a duplicate name: each is an
// error naming the file, line, column and key, and the VM's config is not
// used. Unknown keys are warnings naming the closest known key ("did you
// mean maxrestart?"), so a config written for a newer version still loads.
// The section of a hypervisor the VM does not use is checked, then
// ignored with a warning.
//
// # Keys of vmstated(8)
//
//	name          string    default: the section's key, else the directory's name
//	    The VM's name (see above for the rules).
//	configfile    path      default: none; required for hypervisor bhyve
//	    The hypervisor's own config file, which must exist and be readable.
//	    bhyve: a bhyve -k key=value file; qemu: a -readconfig file (optional).
//	    The daemon writes <configfile>.generated: this file plus the settings
//	    below (memory, cpus, ...), the generated ones winning, and starts the
//	    hypervisor with that.
//	scriptpath    path      default: the VM's directory
//	    The directory holding the hook scripts; must be a directory.
//	os            text      default: none
//	osversion     text      default: none
//	description   text      default: none
//	    Free text for people and hooks (description = A simple test VM;).
//	owner         user      default: none
//	group         group     default: none
//	    A user or group name that must exist on this host, or a numeric id.
//	    The owner and the group's members may control the VM.
//	maxrestart    integer   default: 3         range 0..1000
//	maxrestarttime duration default: 30s       range 1s..30d
//	    Automatic restarts allowed within a sliding window: the
//	    (maxrestart+1)-th automatic restart within maxrestarttime puts the VM
//	    into the failed state, until failreset.
//	bootrom       path      default: none
//	    Firmware (bhyve's bootrom); must exist and be readable.
//	generate_acpi_tables boolean default: false
//	vmexit_on_halt boolean  default: false
//	    bhyve settings, written to the .generated file when set.
//	memory        size      default: 512 for qemu; bhyve: the configfile's
//	    Guest memory, in megabytes or with a unit (see Values). Range 1 MB
//	    to 16 TiB.
//	cpus          integer   default: 1 for qemu (sockets × cores when those
//	                        are set); bhyve: the configfile's    range 1..1024
//	sockets       integer   default: hypervisor's     range 1..1024
//	cores         integer   default: hypervisor's     range 1..1024
//	    When cpus, sockets and cores are all set, cpus must equal
//	    sockets × cores.
//
// # Keys of this daemon
//
//	hypervisor    qemu | bhyve | exec   default: bhyve on FreeBSD, qemu elsewhere
//	autostart     boolean   default: false
//	    Start the VM when the daemon first starts after the host booted.
//	stop_timeout  duration  default: 60s       range 1s..24h
//	    How long a graceful stop (ACPI power button, exec's stop_signal) may
//	    take before the hypervisor process is forced to end.
//	hook_timeout  duration  default: 60s       range 1s..24h
//	    How long a hook may run; then its process group gets SIGTERM, then
//	    SIGKILL, and the hook has failed.
//	hook_timeouts section   default: none
//	    Per-hook overrides of hook_timeout, keyed by state:
//	    hook_timeouts { start_storage = 300s; stop_storage = 5min; }
//	    States: stopped, start_network, start_storage, running, paused,
//	    restarting, restarted, stopping, stop_storage, stop_network, failed,
//	    suspending, suspended.
//	on_poweroff   stop | restart           default: stop
//	    What follows when the guest powers itself off.
//	on_reboot     stop | restart           default: restart
//	    What follows when the guest reboots.
//	on_crash      stop | restart | fail    default: restart
//	    What follows when the hypervisor process dies without a clean
//	    shutdown. fail leaves the VM in the failed state (after the stop
//	    hooks ran) so it can be looked at before it runs again; failreset
//	    clears it. Every automatic restart counts toward maxrestart.
//	on_host_shutdown  stop | suspend       default: stop
//	    What a host shutdown (vmstatedctl shutdown) does to the VM: stop
//	    it, or save its guest and leave it suspended (qemu only); a
//	    suspended VM resumes where it was when the host is up again.
//	depends       list of VM names         default: none
//	    VMs that must be up (running, their running hook finished) before
//	    this one starts: depends = [ db ];
//	    (a single name needs no brackets). Each must exist in the root; no
//	    cycles.
//	log_max_size  size      default: 10 (MB)   range 1 MB..1 TiB
//	    The VM's log file is rotated when it reaches this size.
//	log_max_files integer   default: 5         range 0..1000
//	    Rotated log files kept; 0 keeps them all.
//
// Top-level keys this version does not know are warned about and passed,
// like every top-level scalar, to hooks as VMSTATED_CFG_<KEY> variables,
// so hooks may have settings of their own (bridge = br0;).
//
// # The qemu section (hypervisor = qemu)
//
//	qemu {
//	    binary = qemu-system-x86_64;   # default; a bare name is looked up in PATH
//	    machine = q35;                 # -machine type; default q35
//	    accel = auto;                  # auto | kvm | tcg; default auto: kvm when
//	                                   # /dev/kvm is usable at launch, else tcg
//	    cpu = host;                    # -cpu model; default: QEMU's own
//	    vga = none;                    # none | std | virtio | qxl | cirrus; default
//	                                   # none (screenshots need one)
//	    vnc = unix;                    # off (default) | unix (a socket in the run
//	                                   # directory) | ":N" | "host:N" (display N
//	                                   # is TCP port 5900+N; quote it)
//	    serial = true;                 # serial console on a unix socket in the
//	                                   # run directory; default true
//	    guest_agent = true;            # a channel for qemu-guest-agent; status
//	                                   # shows the guest's addresses; default false
//	    stop_method = agent;           # acpi (default: the power button) | agent
//	                                   # (guest-shutdown, then the button); agent
//	                                   # needs guest_agent
//	    disk {                         # repeat for more disks, in order
//	        path = /var/lib/vm/web.qcow2;  # required; not checked at load
//	                                       # (a start_storage hook may create it)
//	        format = qcow2;            # raw (default) | qcow2 | qed | vmdk | vdi |
//	                                   # vhdx | vpc
//	        interface = virtio;        # virtio (default) | ide | scsi | none
//	        cache = none;              # none | writeback | writethrough |
//	                                   # directsync | unsafe; default: QEMU's
//	        readonly = false;          # default false
//	    }
//	    cdrom = /path/to/install.iso;  # default none
//	    kernel = /boot/vmlinuz;        # direct kernel boot; default none (boot from disk)
//	    initrd = /boot/initrd.gz;      # needs kernel; default none
//	    append = "console=ttyS0";      # kernel command line; needs kernel
//	    nic {                          # repeat for more network devices
//	        type = tap;                # user (QEMU's NAT) | tap | bridge | local; required
//	        ifname = tap-web;          # the host interface; required for tap,
//	                                   # bridge and local: default vm<hash>n<index>
//	        bridge = br0;              # bridge: the daemon attaches the tap (required);
//	                                   # tap: for hooks that attach it (optional)
//	        nat = true;                # local: masquerade the guest; default false
//	        pool = 100.64.0.0/10;      # local: where its /31 comes from (the default)
//	        dns = [ "192.0.2.53" ];    # local: name servers for DHCP; default the host's
//	        model = virtio-net-pci;    # the guest device; default virtio-net-pci
//	        mac = 52:54:00:12:34:56;   # default: QEMU's; unicast only
//	    }
//	    extra_args = [ "-device", "virtio-rng-pci" ];  # appended to the command line
//	}
//
// With no qemu section a qemu VM gets all the defaults above: no disk and
// no network device.
//
// # The exec section (hypervisor = exec)
//
// Any program is the VM process; it must stay in the foreground.
//
//	exec {
//	    command = [ "/usr/local/bin/fc-launch", "lab" ];  # required, a list
//	    stop_signal = TERM;           # graceful stop signal, with or without
//	                                  # SIG, or a number; default TERM
//	    reboot_exit_codes = [ 100 ];  # exit codes meaning "guest rebooted";
//	                                  # default none
//	    poweroff_exit_codes = [ 0 ];  # exit codes meaning "guest powered off";
//	                                  # default [ 0 ]; any other exit is a crash
//	    env { LAB_MODE = fast; }      # extra environment; names are made upper
//	                                  # case (keys are case-insensitive)
//	    console = pty;                # none (default) | pty: the program's
//	                                  # stdin/stdout/stderr are a terminal, the
//	                                  # VM's console (Linux)
//	}
//
// command must be a list so that nothing is split in a way the writer did
// not mean; a single string is an error that says how to write it. A code
// cannot be in both lists.
//
// # The bhyve section (hypervisor = bhyve)
//
//	bhyve {
//	    binary = /usr/sbin/bhyve;       # default
//	    bhyvectl = /usr/sbin/bhyvectl;  # default
//	    console = nmdm;                 # none (default) | nmdm: COM1 on
//	                                    # /dev/nmdm-NAME.A, the daemon on .B
//	}
//
// # Reload
//
// The daemon watches the root and every VM directory (and the directories
// of files a config includes) and reloads a VM's config shortly after it
// changed; SIGHUP and vmstatedctl reload rescan everything. A config that
// no longer loads is reported and the previous one stays in force; a
// running VM is never stopped by a reload. Edits that change nothing the
// daemon uses (comments, spacing, key order) are no change.
package config
