package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// copyRoot copies testdata/roots/<name> into a temporary directory and
// returns the copy's path. Paths under /usr/local/etc/vmstated in the
// files are rewritten to point into the copy, so that fixtures written
// with vmstated's real paths (which must exist: configfile is checked)
// resolve on any host.
func copyRoot(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "roots", name)
	dst := filepath.Join(t.TempDir(), "vmstated")
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		data = []byte(strings.ReplaceAll(string(data), "/usr/local/etc/vmstated", dst))
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// want describes one expected diagnostic.
type want struct {
	dir  string // VM directory, relative to the root
	line int    // 0: any line
	key  string
	sev  Severity
	msg  string // a part of the message
}

func (w want) matches(root string, d Diagnostic) bool {
	return d.Pos.File == filepath.Join(root, w.dir, FileName) &&
		(w.line == 0 || d.Pos.Line == w.line) &&
		d.Key == w.key && d.Severity == w.sev && strings.Contains(d.Msg, w.msg)
}

func TestLoadRootFixtures(t *testing.T) {
	tests := []struct {
		root    string
		opts    LoadOptions
		valid   []string // names of the valid VMs
		invalid []string // directories with errors
		diags   []want   // exactly these diagnostics
	}{
		{root: "valid", valid: []string{"db", "freebsd13", "lab", "web"},
			diags: []want{{"web", 18, "bridge", Warning, "passed to hooks as VMSTATED_CFG_BRIDGE"}}},
		{root: "bsdvm", opts: LoadOptions{DefaultHypervisor: HypervisorBhyve}, valid: []string{"bsdvm"}},
		{root: "vmstated-example", opts: LoadOptions{DefaultHypervisor: HypervisorBhyve}, valid: []string{"testvm"}},
		{root: "gotcha", valid: []string{"vm1"}},
		{root: "err-syntax", invalid: []string{"vm1"},
			diags: []want{{"vm1", 0, "", Error, "syntax error"}}},
		{root: "err-types", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "cpus", Error, "must be a whole number"},
			{"vm1", 3, "autostart", Error, "must be true or false"},
			{"vm1", 4, "memory", Error, "must be a size, not a list"},
			{"vm1", 5, "depends", Error, "must be strings"},
			{"vm1", 6, "stop_timeout", Error, "must be a duration such as 30s"},
		}},
		{root: "err-range", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "cpus", Error, "is 5000; it must be between 1 and 1024"},
			{"vm1", 3, "maxrestart", Error, "between 0 and 1000"},
			{"vm1", 4, "stop_timeout", Error, "write 10min for minutes"},
			{"vm1", 5, "memory", Error, "between 1 and"},
			{"vm1", 6, "log_max_files", Error, "between 0 and 1000"},
		}},
		{root: "err-hypervisor", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "hypervisor", Error, "must be one of qemu, bhyve, exec, not \"qmeu\"; did you mean qemu?"},
		}},
		{root: "err-depends-unknown", valid: []string{"db", "vm2"}, invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "depends", Error, "no VM named dbb in"},
		}},
		{root: "err-depends-cycle", valid: []string{"d"}, invalid: []string{"a", "b", "c"}, diags: []want{
			{"a", 2, "depends", Error, "dependency cycle a -> b -> c -> a"},
			{"b", 2, "depends", Error, "dependency cycle a -> b -> c -> a"},
			{"c", 2, "depends", Error, "dependency cycle a -> b -> c -> a"},
		}},
		{root: "err-configfile", invalid: []string{"vm1", "vm2", "vm3"}, diags: []want{
			{"vm1", 3, "configfile", Error, "no such file or directory"},
			{"vm2", 3, "configfile", Error, "is not a regular file"},
			{"vm3", 1, "configfile", Error, "hypervisor bhyve needs configfile"},
		}},
		{root: "err-duplicate", valid: []string{"three"}, invalid: []string{"one", "two"}, diags: []want{
			{"one", 1, "name", Error, "VM name web is also used by "},
			{"two", 2, "name", Error, "VM name web is also used by "},
		}},
		{root: "err-owner", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "owner", Error, "no user \"no-such-user-vmstated\" on this host"},
			{"vm1", 3, "group", Error, "no group \"no-such-group-vmstated\" on this host"},
		}},
		{root: "err-exec", invalid: []string{"vm1", "vm2"}, diags: []want{
			{"vm1", 3, "exec.reboot_exit_codes", Error, "exit code 0 is in both"},
			{"vm1", 4, "exec.command", Error, "must be a list of words"},
			{"vm1", 5, "exec.stop_signal", Error, "is not a signal"},
			{"vm1", 7, "exec.console", Error, "must be one of none, pty"},
			{"vm2", 1, "exec", Error, "hypervisor exec needs a command"},
		}},
		{root: "err-qemu", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 3, "qemu.accel", Error, "must be one of auto, kvm, tcg"},
			{"vm1", 4, "qemu.disk", Error, "needs a path"},
			{"vm1", 5, "qemu.nic", Error, "type tap needs ifname"},
			{"vm1", 6, "qemu.nic.mac", Error, "multicast"},
			{"vm1", 7, "qemu.vnc", Error, "is not a VNC setting"},
			{"vm1", 8, "qemu.extra_args", Error, "must be a list"},
		}},
		{root: "err-twovms", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "vm2", Error, "defines 2 VMs (vm1, vm2)"},
		}},
		{root: "err-mixed", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "web", Error, "this looks like a VM section"},
		}},
		{root: "err-empty", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 1, "", Error, "has no settings"},
		}},
		{root: "err-name", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "name", Error, "must start with a letter"},
		}},
		{root: "err-topology", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "cpus", Error, "cpus = 4 but sockets × cores = 2 × 1 = 2"},
		}},
		{root: "err-twice", invalid: []string{"vm1"}, diags: []want{
			{"vm1", 3, "cpus", Error, "set 2 times"},
		}},
		{root: "warn-unknown", valid: []string{"vm1"}, diags: []want{
			{"vm1", 2, "maxrestrat", Warning, "did you mean maxrestart?"},
			{"vm1", 4, "qemu.machnie", Warning, "did you mean machine?"},
			{"vm1", 5, "hook_timeouts.start_storge", Warning, "did you mean start_storage?"},
			{"vm1", 6, "my_setting", Warning, "unknown key (passed to hooks as VMSTATED_CFG_MY_SETTING)"},
			{"vm1", 7, "bhyve", Warning, "section has no effect: this VM's hypervisor is qemu"},
		}},
		{root: "warn-memory", valid: []string{"vm1", "vm2"}, diags: []want{
			{"vm1", 2, "memory", Warning, "memory = 2G is 2000000000 bytes (1907 MiB) in UCL; write 2GB for 2 GiB"},
			{"vm2", 2, "memory", Warning, "1073741825 bytes is not a whole number of MiB; using 1024 MiB"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			root := copyRoot(t, tt.root)
			snap := LoadRoot(root, tt.opts)
			if snap.RootErr != nil {
				t.Fatal(snap.RootErr)
			}
			if got := snap.Names(); !slices.Equal(got, nilIfEmpty(tt.valid)) {
				t.Errorf("valid VMs = %v, want %v", got, tt.valid)
			}
			var invalid []string
			for dir := range snap.Invalid {
				invalid = append(invalid, filepath.Base(dir))
			}
			slices.Sort(invalid)
			if !slices.Equal(invalid, nilIfEmpty(tt.invalid)) {
				t.Errorf("invalid dirs = %v, want %v", invalid, tt.invalid)
			}
			diags := snap.Diagnostics()
			used := make([]bool, len(diags))
		next:
			for _, w := range tt.diags {
				for i, d := range diags {
					if !used[i] && w.matches(root, d) {
						used[i] = true
						continue next
					}
				}
				t.Errorf("missing diagnostic %+v", w)
			}
			for i, d := range diags {
				if !used[i] {
					t.Errorf("unexpected diagnostic: %s", d)
				}
				if d.Pos.Line < 1 && !strings.Contains(d.Msg, "syntax") {
					t.Errorf("diagnostic without a line: %s", d)
				}
			}
			if (len(tt.invalid) > 0) != (snap.Err() != nil) {
				t.Errorf("Err() = %v with invalid dirs %v", snap.Err(), tt.invalid)
			}
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestLoadRootValues(t *testing.T) {
	root := copyRoot(t, "valid")
	snap := LoadRoot(root, LoadOptions{})
	if err := snap.Err(); err != nil {
		t.Fatal(err)
	}
	web := snap.VMs["web"]
	if web == nil {
		t.Fatal("web not loaded")
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", web.Name, "web"},
		{"dir", web.Dir, filepath.Join(root, "web")},
		{"file", web.File, filepath.Join(root, "web", "config")},
		{"description", web.Description, "Public web server"},
		{"memory", web.MemoryMB, int64(2048)},
		{"cpus", web.CPUs, 2},
		{"maxrestart", web.MaxRestart, 5},
		{"maxrestarttime", web.MaxRestartTime, time.Minute},
		{"autostart", web.Autostart, true},
		{"stop_timeout", web.StopTimeout, 90 * time.Second},
		{"hook_timeout", web.HookTimeout, 30 * time.Second},
		{"hook start_storage", web.HookTimeoutFor("start_storage"), 300 * time.Second},
		{"hook stop_storage", web.HookTimeoutFor("stop_storage"), 5 * time.Minute},
		{"hook running", web.HookTimeoutFor("running"), 30 * time.Second},
		{"on_crash", web.OnCrash, ActionFail},
		{"on_poweroff", web.OnPoweroff, ActionStop},
		{"on_reboot", web.OnReboot, ActionRestart},
		{"depends", web.Depends, []string{"db"}},
		{"owner", web.Owner, "root"},
		{"uid", web.OwnerUID, 0},
		{"gid", web.GroupGID, 0},
		{"log_max_size", web.LogMaxSizeMB, int64(50)},
		{"log_max_files", web.LogMaxFiles, DefaultLogMaxFiles},
		{"scriptpath", web.ScriptPath, web.Dir},
		{"hypervisor", web.Hypervisor, HypervisorQEMU},
		{"accel", web.QEMU.Accel, "tcg"},
		{"binary", web.QEMU.Binary, DefaultQEMUBinary},
		{"serial", web.QEMU.Serial, true},
		{"vga", web.QEMU.VGA, "std"},
		{"vnc", web.QEMU.VNC, "unix"},
		{"disks", web.QEMU.Disks, []Disk{
			{Path: filepath.Join(root, "web", "web.qcow2"), Format: "qcow2", Interface: "virtio", Cache: "none"},
			{Path: "/var/lib/vm/data.img", Format: "raw", Interface: "virtio", ReadOnly: true},
		}},
		{"nics", web.QEMU.NICs, []NIC{
			{Type: "tap", Ifname: "tap-web", Bridge: "br0", Model: DefaultNICModel, MAC: "52:54:00:12:34:56"},
			{Type: "user", Model: DefaultNICModel},
		}},
		{"extra_args", web.QEMU.ExtraArgs, []string{"-device", "virtio-rng-pci"}},
		{"exec", web.Exec == nil, true},
		{"scalar bridge", web.Scalars()["bridge"], "br0"},
		{"scalar memory", web.Scalars()["memory"], "2048"},
		{"scalar stop_timeout", web.Scalars()["stop_timeout"], "90"},
		{"scalar depends", web.Scalars()["depends"], "db"},
		{"set memory", web.IsSet("memory"), true},
		{"set os", web.IsSet("os"), false},
	}
	db := snap.VMs["db"]
	checks = append(checks, []struct {
		what      string
		got, want any
	}{
		{"db memory", db.MemoryMB, int64(1024)},
		{"db defaults maxrestart", db.MaxRestart, 3},
		{"db maxrestarttime", db.MaxRestartTime, 30 * time.Second},
		{"db stop_timeout", db.StopTimeout, 60 * time.Second},
		{"db owner", db.OwnerUID, -1},
		{"db qemu machine", db.QEMU.Machine, "q35"},
		{"db qemu accel", db.QEMU.Accel, "auto"},
		{"db on_crash", db.OnCrash, ActionRestart},
	}...)
	lab := snap.VMs["lab"]
	checks = append(checks, []struct {
		what      string
		got, want any
	}{
		{"lab command", lab.Exec.Command, []string{"/bin/sleep", "3600"}},
		{"lab signal", lab.Exec.StopSignal, "SIGINT"},
		{"lab reboot", lab.Exec.RebootExitCodes, []int{100, 101}},
		{"lab poweroff", lab.Exec.PoweroffExitCodes, []int{0}},
		{"lab env", lab.Exec.Env, map[string]string{"LAB_MODE": "fast"}},
		{"lab console", lab.Exec.Console, ExecConsolePTY},
		{"lab qemu", lab.QEMU == nil, true},
	}...)
	bsd := snap.VMs["freebsd13"]
	checks = append(checks, []struct {
		what      string
		got, want any
	}{
		{"bsd dir", bsd.Dir, filepath.Join(root, "bsd")},
		{"bsd configfile", bsd.ConfigFile, filepath.Join(root, "bsd", "bhyve_config")},
		{"bsd binary", bsd.Bhyve.Binary, "/usr/local/bin/fake-bhyve"},
		{"bsd bhyvectl", bsd.Bhyve.Bhyvectl, DefaultBhyvectl},
		{"bsd console", bsd.Bhyve.Console, BhyveConsoleNMDM},
		{"bsd memory", bsd.MemoryMB, int64(4096)},
		{"bsd cpus unset", bsd.CPUs, 0},
		{"bsd acpi", bsd.GenerateACPITables, true},
		{"bsd acpi set", bsd.IsSet("generate_acpi_tables"), true},
	}...)
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
	var ignored []string
	for _, ig := range snap.Ignored {
		ignored = append(ignored, filepath.Base(ig.Path))
	}
	slices.Sort(ignored)
	if want := []string{".hidden", "README", "nohook", "old~", "web.bak"}; !slices.Equal(ignored, want) {
		t.Errorf("ignored = %v, want %v", ignored, want)
	}
}

// The man page's example, verbatim: it loads, and its configfile is
// checked where it says.
func TestManPageExampleVerbatim(t *testing.T) {
	const path = "/usr/local/etc/vmstated/bsdvm/bhyve_config"
	if _, err := os.Stat(path); err == nil {
		t.Skip(path + " exists on this host")
	}
	dir := filepath.Join(t.TempDir(), "bsdvm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("testdata/roots/bsdvm/bsdvm/config")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	vm, diags := LoadDir(dir, LoadOptions{DefaultHypervisor: HypervisorBhyve})
	if vm != nil || len(diags) != 1 {
		t.Fatalf("got %v, %v; want one error", vm, diags)
	}
	d := diags[0]
	if d.Key != "configfile" || d.Pos.Line != 1 || !strings.Contains(d.Msg, path) {
		t.Errorf("diagnostic = %s", d)
	}
}

func TestGotchaValues(t *testing.T) {
	root := copyRoot(t, "gotcha")
	vm, diags := LoadDir(filepath.Join(root, "vm1"), LoadOptions{})
	if vm == nil {
		t.Fatal(diags)
	}
	if vm.StopTimeout != 30*time.Second || vm.HookTimeout != 5*time.Minute || vm.MaxRestartTime != 2*time.Minute ||
		vm.MemoryMB != 2048 || vm.CPUs != 2 || !vm.Autostart {
		t.Errorf("got %+v", vm)
	}
}

func TestExamples(t *testing.T) {
	root := copyRoot(t, "vmstated-example")
	snap := LoadRoot(root, LoadOptions{DefaultHypervisor: HypervisorBhyve})
	vm := snap.VMs["testvm"]
	if vm == nil {
		t.Fatal(snap.Err())
	}
	if vm.Description != "A simple test VM" || vm.OSVersion != "14.1" || vm.OS != "FreeBSD" || vm.Hypervisor != HypervisorBhyve {
		t.Errorf("got %+v", vm)
	}
	if s := vm.Scalars(); s["description"] != "A simple test VM" || s["maxrestarttime"] != "30" {
		t.Errorf("scalars = %v", s)
	}
}

func TestDigestIgnoresSpelling(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) *VM {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		vm, diags := LoadDir(dir, LoadOptions{DefaultHypervisor: HypervisorQEMU})
		if vm == nil {
			t.Fatal(diags)
		}
		return vm
	}
	a := write("vm1 { memory = 1024; cpus = 2; }\n")
	b := write("# comment\nvm1 {\n  cpus = 2\n  memory = 1GB\n}\n")
	c := write("vm1 { memory = 1024; cpus = 3; }\n")
	if a.Digest != b.Digest {
		t.Error("same meaning, different digests")
	}
	if a.Digest == c.Digest {
		t.Error("different meaning, same digest")
	}
}

func TestValidateName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"Web-01.prod_x", true}, {"a", true},
		{"", false}, {"1web", false}, {"-web", false}, {"web/x", false}, {"we b", false},
		{strings.Repeat("a", MaxNameLen), true}, {strings.Repeat("a", MaxNameLen+1), false},
		{DaemonLogName, false}, {"vmstated2", true},
	} {
		if err := ValidateName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v", tt.name, err)
		}
	}
}

// A VM may not be called vmstated, by its directory or its name key: its
// log would be the daemon's own vmstated.log.
func TestDaemonLogNameReserved(t *testing.T) {
	for _, tc := range []struct{ dir, text string }{
		{"vmstated", "hypervisor = exec;\nexec { command = [\"/bin/true\"]; }\n"},
		{"web", "name = vmstated;\nhypervisor = exec;\nexec { command = [\"/bin/true\"]; }\n"},
	} {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, tc.dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, tc.dir, "config"), []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		err := LoadRoot(root, LoadOptions{}).Err()
		if err == nil || !strings.Contains(err.Error(), "reserved") || !strings.Contains(err.Error(), "vmstated.log") {
			t.Errorf("dir %s: %v, want the name refused as reserved for the daemon's log", tc.dir, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"maxrestrat", "maxrestart"}, {"memroy", "memory"}, {"cpu", "cpus"},
		{"hook_timout", "hook_timeout"}, {"zzzzzz", ""},
	} {
		if got := suggest(tt.in, topKeyNames); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseText(t *testing.T) {
	durs := map[string]time.Duration{"30s": 30 * time.Second, "5min": 5 * time.Minute, "90": 90 * time.Second,
		"1m30s": 90 * time.Second, "2 min": 2 * time.Minute, "1.5h": 90 * time.Minute, "10m": 10 * time.Minute}
	for s, want := range durs {
		if got, ok := parseDurationText(s); !ok || got != want {
			t.Errorf("parseDurationText(%q) = %v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "soon", "5 parsecs"} {
		if _, ok := parseDurationText(s); ok {
			t.Errorf("parseDurationText(%q) accepted", s)
		}
	}
	sizes := map[string]int64{"2G": 2 << 30, "2GiB": 2 << 30, "2gb": 2 << 30, "512M": 512 << 20, "2048": 2048 << 20, "1.5G": 3 << 29}
	for s, want := range sizes {
		if got, ok := parseSizeText(s); !ok || got != want {
			t.Errorf("parseSizeText(%q) = %v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "G", "-1", "2X", "lots"} {
		if _, ok := parseSizeText(s); ok {
			t.Errorf("parseSizeText(%q) accepted", s)
		}
	}
}

func TestLoadDirMissing(t *testing.T) {
	vm, diags := LoadDir(t.TempDir(), LoadOptions{})
	if vm != nil || len(diags) != 1 || !strings.Contains(diags[0].Msg, "no config file") {
		t.Errorf("got %v %v", vm, diags)
	}
}

func TestLoadRootMissing(t *testing.T) {
	snap := LoadRoot(filepath.Join(t.TempDir(), "nope"), LoadOptions{})
	if snap.RootErr == nil || snap.Err() == nil {
		t.Error("no error for a missing root")
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{Key: "cpus", Msg: "bad", Severity: Warning}
	d.Pos.File, d.Pos.Line, d.Pos.Col = "/r/vm/config", 3, 5
	if got := d.String(); got != "/r/vm/config:3:5: cpus: warning: bad" {
		t.Errorf("String() = %q", got)
	}
}

func TestUnreadableConfigFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: file permissions do not stop reading")
	}
	dir := t.TempDir()
	cf := filepath.Join(dir, "bhyve_config")
	if err := os.WriteFile(cf, []byte("cpus=1\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("vm1 {\n  hypervisor = bhyve;\n  configfile = bhyve_config;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags := LoadDir(dir, LoadOptions{})
	if len(diags) != 1 || diags[0].Key != "configfile" || diags[0].Pos.Line != 3 || !strings.Contains(diags[0].Msg, "cannot be read") {
		t.Errorf("diagnostics = %v", diags)
	}
}

func TestIgnoredAreLogged(t *testing.T) {
	root := copyRoot(t, "valid")
	var logged []string
	LoadRoot(root, LoadOptions{Logf: func(f string, a ...any) {
		logged = append(logged, fmt.Sprintf(f, a...))
	}})
	text := strings.Join(logged, "\n")
	for _, want := range []string{".hidden: hidden", "README: not a directory", "nohook: no config file", "web.bak: editor or package-manager leftover", "old~: editor"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
}
