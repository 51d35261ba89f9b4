// Package examples holds VM directories, service files and the demo that
// users copy. The tests load every example config with the daemon's own
// loader, check every shell script with sh -n, run the hooks that can run
// without root, and run the demo the README points to.
package examples

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// noDiagnostics fails on any error or warning.
func noDiagnostics(t *testing.T, where string, diags config.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		t.Errorf("%s: %s", where, d)
	}
}

func TestDemoConfigs(t *testing.T) {
	snap := config.LoadRoot("demo", config.LoadOptions{})
	if snap.RootErr != nil {
		t.Fatal(snap.RootErr)
	}
	noDiagnostics(t, "demo", snap.Diagnostics())
	vm := snap.VMs["demo"]
	if vm == nil || vm.Hypervisor != config.HypervisorExec {
		t.Fatalf("demo: got %+v, want an exec VM", vm)
	}
	abs, _ := filepath.Abs(filepath.Join("demo", "demo", "guest"))
	if got := vm.Exec.Command; len(got) != 2 || got[1] != abs {
		t.Errorf("demo: command = %q, want $CURDIR expanded to %s", got, abs)
	}
	if q := snap.VMs["demo-qemu"]; q == nil || q.QEMU.Accel != "tcg" || q.ScriptPath != filepath.Dir(abs) {
		t.Errorf("demo-qemu: got %+v, want TCG and the demo VM's hooks", q)
	}
}

func TestQEMUBridgeConfig(t *testing.T) {
	vm, diags := config.LoadDir("qemu-bridge", config.LoadOptions{})
	noDiagnostics(t, "qemu-bridge", diags)
	if vm == nil {
		t.FailNow()
	}
	if vm.Name != "web" || len(vm.QEMU.NICs) != 1 {
		t.Fatalf("got %+v", vm)
	}
	// The hooks derive the tap name from the VM's name.
	if nic := vm.QEMU.NICs[0]; nic.Type != "tap" || nic.Ifname != "tap-"+vm.Name || nic.Bridge != "br0" {
		t.Errorf("nic = %+v, want tap-%s on br0 as the hooks assume", nic, vm.Name)
	}
}

// The networks the daemon sets up itself: a tap on a bridge, and a
// private /31 with DHCP and NAT.
func TestQEMUDaemonNetworkConfigs(t *testing.T) {
	for _, c := range []struct {
		dir, name string
		want      config.NIC
	}{
		{"qemu-daemon-bridge", "app", config.NIC{Type: config.NICBridge, Bridge: "br0", Model: config.DefaultNICModel}},
		{"qemu-local", "lab", config.NIC{Type: config.NICLocal, NAT: true, Model: config.DefaultNICModel}},
	} {
		vm, diags := config.LoadDir(c.dir, config.LoadOptions{})
		noDiagnostics(t, c.dir, diags)
		if vm == nil {
			continue
		}
		if vm.Name != c.name || len(vm.QEMU.NICs) != 1 || !reflect.DeepEqual(vm.QEMU.NICs[0], c.want) {
			t.Errorf("%s: got %s with NICs %+v, want %s with %+v", c.dir, vm.Name, vm.QEMU.NICs, c.name, c.want)
		}
	}
}

func TestQEMUStorageConfig(t *testing.T) {
	snap := config.LoadRoot("qemu-storage", config.LoadOptions{})
	if snap.RootErr != nil {
		t.Fatal(snap.RootErr)
	}
	noDiagnostics(t, "qemu-storage", snap.Diagnostics())
	vm := snap.VMs["db"]
	if vm == nil {
		t.Fatalf("no VM db: %v", snap.Names())
	}
	// From the template, and overridden at priority 1.
	if vm.MaxRestartTime != 5*time.Minute || vm.HookTimeoutFor("start_storage") != 10*time.Minute ||
		vm.StopTimeout != 90*time.Second {
		t.Errorf("template settings not applied: %+v", vm)
	}
	if vm.MemoryMB != 4096 || vm.CPUs != 2 {
		t.Errorf("overrides not applied: memory %d, cpus %d; want 4096, 2", vm.MemoryMB, vm.CPUs)
	}
	if len(vm.Includes) != 1 || !strings.HasSuffix(vm.Includes[0], "templates/qemu.conf") {
		t.Errorf("includes = %v", vm.Includes)
	}
	if len(vm.QEMU.Disks) != 1 || vm.QEMU.Disks[0].Path != "/var/lib/vm/db.qcow2" {
		t.Errorf("disks = %+v; the hooks assume /var/lib/vm/<name>.qcow2", vm.QEMU.Disks)
	}
}

const bsdvmPath = "/usr/local/etc/vmstated/bsdvm/bhyve_config"

func TestBhyveConfig(t *testing.T) {
	src := filepath.Join("bhyve", "bsdvm")
	b, err := os.ReadFile(filepath.Join(src, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "bsdvm { configfile = " + bsdvmPath + "; }\n"; string(b) != want {
		t.Errorf("bhyve/bsdvm/config is not vmstated(8)'s example verbatim:\n%s", b)
	}
	opts := config.LoadOptions{DefaultHypervisor: config.HypervisorBhyve}

	// Where it was written for, the configfile must resolve; here, exactly
	// that one diagnostic is expected.
	vm, diags := config.LoadDir(src, opts)
	if _, err := os.Stat(bsdvmPath); err != nil {
		if vm != nil || len(diags) != 1 || diags[0].Key != "configfile" || !strings.Contains(diags[0].Msg, bsdvmPath) {
			t.Errorf("in place: got %v, %v; want only the missing configfile", vm, diags)
		}
	}

	// Copied to a root where the path resolves, it loads cleanly.
	root := t.TempDir()
	dir := filepath.Join(root, "bsdvm")
	copyDir(t, src, dir, func(data []byte) []byte {
		return bytes.ReplaceAll(data, []byte(bsdvmPath), []byte(filepath.Join(dir, "bhyve_config")))
	})
	vm, diags = config.LoadDir(dir, opts)
	noDiagnostics(t, "bhyve copy", diags)
	if vm == nil || vm.Name != "bsdvm" || vm.Hypervisor != config.HypervisorBhyve {
		t.Fatalf("got %+v", vm)
	}

	// bhyve reads its file strictly; so does the .generated writer.
	user, err := os.ReadFile(filepath.Join(src, "bhyve_config"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := hypervisor.CombineBhyveConfig(user, []hypervisor.Setting{{Key: "memory.size", Value: "1024M"}})
	if err != nil {
		t.Fatalf("bhyve_config: %v", err)
	}
	if !bytes.Contains(out, []byte("pci.0.3.0.backend=tap-bsdvm")) {
		t.Errorf("generated file lost the NIC:\n%s", out)
	}
}

// copyDir copies a directory tree, keeping file modes, through edit.
func copyDir(t *testing.T, src, dst string, edit func([]byte) []byte) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if edit != nil {
			data = edit(data)
		}
		return os.WriteFile(target, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// scripts returns every shell script under the examples: files starting
// with #!/bin/sh.
func scripts(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(b, []byte("#!/bin/sh")) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 15 {
		t.Fatalf("found only %d scripts: %v", len(out), out)
	}
	return out
}

func TestScriptsParse(t *testing.T) {
	for _, p := range scripts(t) {
		out, err := exec.Command("sh", "-n", p).CombinedOutput()
		if err != nil {
			t.Errorf("sh -n %s: %v\n%s", p, err, out)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v; hooks and scripts must be 0755 (and not group-writable, or a root daemon refuses them)", p, fi.Mode().Perm())
		}
	}
}

// TestHookNames checks that every executable in a VM directory is named
// after a state (or is the demo's guest), so that none is dead.
func TestHookNames(t *testing.T) {
	for _, p := range scripts(t) {
		name := filepath.Base(p)
		if statemachine.State(name).Valid() {
			continue
		}
		switch p {
		case filepath.Join("demo", "demo", "guest"), filepath.Join("demo", "run.sh"), filepath.Join("rc.d", "vmstated"):
			continue
		}
		t.Errorf("%s is not named after a state; vmstated would never run it", p)
	}
}

func TestDemoHooksRun(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join("demo", "demo"))
	for _, st := range statemachine.States {
		hook := filepath.Join(dir, string(st))
		cmd := exec.Command(hook, "demo", string(st))
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "VMSTATED_NAME=demo", "VMSTATED_PID=42", "VMSTATED_RESTARTS=1", "VMSTATED_REASON=test"}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "would ") {
			t.Errorf("%s: %v: %q", st, err, out)
		}
	}
}

// TestDemoGuest runs the demo's pretend guest: the first boot ends in a
// reboot (exit 100), the second runs until SIGTERM and powers off (exit 0).
func TestDemoGuest(t *testing.T) {
	guest, _ := filepath.Abs(filepath.Join("demo", "demo", "guest"))
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := exec.CommandContext(ctx, "/bin/sh", guest)
	first.Dir = dir
	out, err := first.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 100 || !strings.Contains(string(out), "rebooting") {
		t.Fatalf("first boot: %v\n%s", err, out)
	}

	second := exec.CommandContext(ctx, "/bin/sh", guest)
	second.Dir = dir
	pr, pw := io.Pipe()
	second.Stdout, second.Stderr = pw, pw
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Wait(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "multi-user mode reached") {
			break
		}
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest strings.Builder
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	if err := <-done; err != nil || !strings.Contains(rest.String(), "powered off") {
		t.Fatalf("second boot after SIGTERM: %v\n%s", err, rest.String())
	}
}

// TestStorageHooksRun runs the qemu-storage hooks against a disk in a
// temporary directory, twice each, to show they are idempotent.
func TestStorageHooksRun(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian: qemu-utils); the storage hooks are not run")
	}
	tmp := t.TempDir()
	for _, h := range []string{"start_storage", "stop_storage"} {
		b, err := os.ReadFile(filepath.Join("qemu-storage", "db", h))
		if err != nil {
			t.Fatal(err)
		}
		const line = "disk=/var/lib/vm/$vm.qcow2"
		if !bytes.Contains(b, []byte(line)) {
			t.Fatalf("%s no longer sets %s; update this test", h, line)
		}
		b = bytes.Replace(b, []byte(line), []byte("disk="+tmp+"/$vm.qcow2"), 1)
		if err := os.WriteFile(filepath.Join(tmp, h), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(h string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(tmp, h), "db", h)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", h, err, out)
		}
		return string(out)
	}
	if out := run("start_storage"); !strings.Contains(out, "created") || !strings.Contains(out, "snapshot pre-boot") {
		t.Errorf("first start_storage: %s", out)
	}
	if out := run("start_storage"); strings.Contains(out, "created") {
		t.Errorf("second start_storage created the disk again: %s", out)
	}
	run("stop_storage")
	out := run("stop_storage")
	if strings.Count(out, "pre-boot") != 1 {
		t.Errorf("want exactly one pre-boot snapshot after two boots:\n%s", out)
	}
}

func TestServiceFiles(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("systemd", "vmstated.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nType=notify\n",
		"\nKillMode=process\n",
		"\nExecStart=/usr/local/sbin/vmstated -f\n",
		"\nExecReload=/bin/kill -HUP $MAINPID\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("vmstated.service lacks %q", strings.TrimSpace(want))
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", filepath.Join("systemd", "vmstated.service")).CombinedOutput(); err != nil {
			// verify also complains that the binary is not installed;
			// report, but only fail on syntax.
			if bytes.Contains(out, []byte("Unknown")) || bytes.Contains(out, []byte("syntax")) {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		}
	}
}

// unitKeys returns a unit file's settings as key -> values, in order.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("%s: line %q is not key=value", path, l)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// The companion unit shuts the guests down at host shutdown only: it stops
// before vmstated, the network and remote storage; a stop or restart of
// vmstated does not reach it; systemd waits longer than the command may
// take.
func TestGuestsUnit(t *testing.T) {
	keys := unitKeys(t, filepath.Join("systemd", "vmstated-guests.service"))
	for _, k := range []string{"Requires", "BindsTo", "PartOf", "Requisite"} {
		for _, v := range keys[k] {
			if strings.Contains(v, "vmstated.service") {
				t.Errorf("%s=%s: a stop or restart of vmstated (an upgrade) would stop every guest", k, v)
			}
		}
	}
	after := strings.Fields(strings.Join(keys["After"], " "))
	for _, want := range []string{"vmstated.service", "network-online.target", "remote-fs.target", "local-fs.target"} {
		if !slices.Contains(after, want) {
			t.Errorf("After= lacks %s, so the guests' stop would not run before its stop", want)
		}
	}
	if got := keys["ExecStop"]; len(got) != 1 || got[0] != "/usr/local/bin/vmstatedctl shutdown -t ${VMSTATED_SHUTDOWN_TIMEOUT}" {
		t.Errorf("ExecStop=%v", got)
	}
	var deadline, stopSec float64
	for _, v := range keys["Environment"] {
		if n, ok := strings.CutPrefix(v, "VMSTATED_SHUTDOWN_TIMEOUT="); ok {
			fmt.Sscan(n, &deadline)
		}
	}
	if len(keys["TimeoutStopSec"]) == 1 {
		fmt.Sscan(keys["TimeoutStopSec"][0], &stopSec)
	}
	// vmstatedctl shutdown ends within 10 s after its deadline.
	if deadline != 300 || stopSec <= deadline+10 {
		t.Errorf("deadline %v s (want the default 300), TimeoutStopSec %v s: systemd must wait longer than the deadline plus 10 s", deadline, stopSec)
	}
	if keys["Type"][0] != "oneshot" || keys["RemainAfterExit"][0] != "yes" {
		t.Errorf("Type=%v RemainAfterExit=%v: the unit must stay active so that its stop runs at shutdown", keys["Type"], keys["RemainAfterExit"])
	}
	daemon := unitKeys(t, filepath.Join("systemd", "vmstated.service"))
	if also := daemon["Also"]; !slices.Contains(also, "vmstated-guests.service") {
		t.Errorf("vmstated.service has Also=%v: enabling vmstated would not enable the guests' shutdown", also)
	}
	if wants := daemon["Wants"]; !slices.Contains(wants, "vmstated-guests.service") {
		t.Errorf("vmstated.service has Wants=%v: a daemon started by hand would leave the guests' shutdown inactive", wants)
	}
}

// rcSubr stands in for FreeBSD's /etc/rc.subr with the few functions the
// script uses, so that its shutdown path runs here: run_rc_command stop
// runs stop_precmd, as rc.subr does before it signals the daemon.
const rcSubr = `load_rc_config() { :; }
checkyesno() { eval _v=\$$1; case $_v in [Yy][Ee][Ss]) return 0;; esac; return 1; }
warn() { echo "warning: $*" >&2; }
run_rc_command() { case $1 in *stop) $stop_precmd ;; esac; }
`

// The rc.d script shuts the guests down when rc.shutdown runs it, with the
// deadline cut to what rc.shutdown's watchdog leaves, and never on a stop
// or restart by hand.
func TestRCShutdownPath(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("rc.d", "vmstated"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n# KEYWORD: shutdown\n") {
		t.Error("rc.d/vmstated lacks KEYWORD: shutdown; rc.shutdown would not run it")
	}
	dir := t.TempDir()
	ctl := filepath.Join(dir, "vmstatedctl")
	record := filepath.Join(dir, "calls")
	if err := os.WriteFile(ctl, []byte("#!/bin/sh\necho \"$*\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	subr := filepath.Join(dir, "rc.subr")
	if err := os.WriteFile(subr, []byte(rcSubr), 0o644); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(string(b), "/etc/rc.subr", subr)
	script = strings.ReplaceAll(script, "/usr/local/bin/vmstatedctl", ctl)
	path := filepath.Join(dir, "vmstated")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, arg string
		env       []string
		want      string // the vmstatedctl command line, "" for none
		warn      bool
	}{
		{"rc.shutdown", "faststop", []string{"rc_shutdown=reboot"}, "shutdown -t 300", false},
		{"own timeout", "faststop", []string{"rc_shutdown=reboot", "vmstated_shutdown_timeout=60", "rcshutdown_timeout=330"}, "shutdown -t 60", false},
		{"watchdog shorter", "faststop", []string{"rc_shutdown=reboot", "rcshutdown_timeout=90"}, "shutdown -t 70", true},
		{"turned off", "faststop", []string{"rc_shutdown=reboot", "vmstated_shutdown_guests=NO"}, "", false},
		{"service stop", "stop", nil, "", false},
		{"service restart", "restart", nil, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(record)
			// rc.shutdown sources the script in a subshell, so its
			// rc_shutdown and rc.conf's settings are the script's variables.
			cmd := exec.Command("sh", append([]string{"-c", `for kv in "$@"; do export "$kv"; done; set -- ` + c.arg + `; . ` + path, "sh"}, c.env...)...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			got, _ := os.ReadFile(record)
			if strings.TrimSpace(string(got)) != c.want {
				t.Errorf("vmstatedctl ran %q, want %q", strings.TrimSpace(string(got)), c.want)
			}
			if w := strings.Contains(stderr.String(), "rcshutdown_timeout"); w != c.warn {
				t.Errorf("warning %v, want %v: %s", w, c.warn, stderr.String())
			}
		})
	}
}

// TestBridgeHooksRun runs the qemu-bridge hooks in a network namespace of
// their own, twice each, and checks the tap device appears on the bridge
// and goes away again.
func TestBridgeHooksRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and tap devices")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the bridge hooks are not run", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun; the bridge hooks are not run")
	}
	dir, _ := filepath.Abs("qemu-bridge")
	script := `set -e
cd "$1"
if ./start_network web start_network 2>/dev/null; then echo "started without a bridge"; exit 1; fi
ip link add br0 type bridge
ip link set br0 up
./start_network web start_network
./start_network web start_network
ip -o link show dev tap-web | grep -q "master br0"
echo "tap-web on br0"
./stop_network web stop_network
./stop_network web stop_network
if ip link show dev tap-web >/dev/null 2>&1; then echo "tap-web still there"; exit 1; fi
echo "tap-web gone"
`
	out, err := exec.Command("unshare", "-n", "sh", "-c", script, "sh", dir).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			t.Skipf("cannot make a network namespace here: %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"created tap-web", "exists already", "tap-web on br0", "removed tap-web", "already gone", "tap-web gone"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
