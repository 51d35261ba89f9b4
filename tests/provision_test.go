//go:build linux

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/cloudinit"
)

// qemuImgInfo is what qemu-img info --output=json says of an image.
type qemuImgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	Backing     string `json:"backing-filename"`
}

func imgInfo(t *testing.T, path string) qemuImgInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var i qemuImgInfo
	if err := json.Unmarshal(out, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// vmstatedctl create disk, as a user runs it, checked with qemu-img.
func TestCreateDisk(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (apt-get install qemu-utils)")
	}
	t.Parallel()
	e := newEnv(t)
	img := func(n string) string { return filepath.Join(e.work, n) }
	ctl := func(args ...string) (string, error) {
		out, err := e.command(ctlBin, append([]string{"create", "disk"}, args...)...).CombinedOutput()
		return string(out), err
	}
	const mb = 1 << 20
	for _, c := range []struct {
		args    []string
		path    string
		format  string
		size    int64
		backing string
	}{
		{[]string{"-s", "4.5G"}, "plain.raw", "raw", 4608 * mb, ""},
		{[]string{"-f", "qcow2", "-s", "1000k"}, "base.qcow2", "qcow2", 1 * mb, ""},
		{[]string{"-b", img("base.qcow2")}, "over.qcow2", "qcow2", 1 * mb, img("base.qcow2")},
		{[]string{"-b", img("base.qcow2"), "-s", "2G"}, "bigger.qcow2", "qcow2", 2048 * mb, img("base.qcow2")},
		{[]string{"-i", img("base.qcow2"), "-s", "64M"}, "copy.raw", "raw", 64 * mb, ""},
		{[]string{"-i", img("copy.raw"), "-f", "qcow2"}, "copy.qcow2", "qcow2", 64 * mb, ""},
	} {
		out, err := ctl(append(c.args, img(c.path))...)
		if err != nil {
			t.Fatalf("create disk %v: %v\n%s", c.args, err, out)
		}
		got := imgInfo(t, img(c.path))
		if got.Format != c.format || got.VirtualSize != c.size || got.Backing != c.backing {
			t.Errorf("create disk %v: qemu-img says %+v, want %s of %d bytes backed by %q", c.args, got, c.format, c.size, c.backing)
		}
	}
	before := imgInfo(t, img("plain.raw"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-s", "1G", img("plain.raw")}, "never overwritten"},
		{[]string{"-i", img("copy.raw"), "-s", "10M", img("small.raw")}, "smaller"},
		{[]string{"-b", img("bigger.qcow2"), "-s", "1G", img("small.qcow2")}, "smaller"},
		{[]string{"-b", img("base.qcow2"), "-i", img("copy.raw"), img("both.qcow2")}, "exclude"},
		{[]string{"-s", "lots", img("bad.raw")}, "suffix"},
	} {
		out, err := ctl(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("create disk %v: %v, %q; want a refusal saying %q", c.args, err, out, c.want)
		}
	}
	if after := imgInfo(t, img("plain.raw")); after != before {
		t.Errorf("the existing image changed: %+v -> %+v", before, after)
	}
	for _, n := range []string{"small.raw", "small.qcow2", "both.qcow2", "bad.raw"} {
		if _, err := os.Lstat(img(n)); err == nil {
			t.Errorf("a refused create left %s behind", n)
		}
	}
}

// vmstatedctl create vm writes a VM directory that vmstated -n accepts,
// that a running daemon picks up by itself, and whose VM starts.
func TestCreateVM(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (apt-get install qemu-utils)")
	}
	t.Parallel()
	e := newEnv(t)
	ctl := func(args ...string) (string, error) {
		out, err := e.command(ctlBin, args...).CombinedOutput()
		return string(out), err
	}
	disk := filepath.Join(e.work, "disk.qcow2")
	if out, err := ctl("create", "disk", "-f", "qcow2", "-s", "16M", disk); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Full form, checked offline.
	full := e.name("full")
	if out, err := ctl("create", "vm", "-c", e.root, "-m", "1GB", "-p", "2", "-d", disk, full); err != nil {
		t.Fatalf("create vm: %v\n%s", err, out)
	}
	text, err := os.ReadFile(filepath.Join(e.root, full, "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Guest memory", `memory = "1GB";`, "cpus = 2;", `disk { path = "` + disk + `"; format = qcow2; }`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if out, err := e.command(vmstatedBin, "-n", "-c", e.root).CombinedOutput(); err != nil {
		t.Fatalf("vmstated -n: %v\n%s", err, out)
	}
	// An existing directory is never touched.
	if out, err := ctl("create", "vm", "-c", e.root, "-m", "2GB", full); err == nil || !strings.Contains(out, "already exists") {
		t.Errorf("create vm over an existing one: %v %s", err, out)
	}
	if again, _ := os.ReadFile(filepath.Join(e.root, full, "config")); string(again) != string(text) {
		t.Error("the existing config changed")
	}
	// A config that would not load is not put in place.
	if out, err := ctl("create", "vm", "-c", e.root, "-m", "lots", e.name("bad")); err == nil || !strings.Contains(out, "nothing was created") {
		t.Errorf("create vm -m lots: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.root, e.name("bad"))); err == nil {
		t.Error("a config that does not load was left in place")
	}
	if left, _ := filepath.Glob(filepath.Join(e.root, ".*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	// From a template (accel = tcg: KVM does not run guests here), made
	// while the daemon runs: it appears and starts.
	tmpl := filepath.Join(e.root, "templates", "tcg.conf")
	if err := os.Mkdir(filepath.Dir(tmpl), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile(tmpl, "hypervisor = qemu;\nstop_timeout = 2s;\nqemu { accel = tcg; serial = false; }\n")
	d := e.start()
	vm := e.name("made")
	e.mu.Lock()
	e.vms = append(e.vms, vm) // so cleanup finds its QEMU
	e.mu.Unlock()
	if out, err := ctl("create", "vm", "-c", e.root, "-m", "64", "-t", "tcg", vm); err != nil {
		t.Fatalf("create vm -t: %v\n%s", err, out)
	}
	waitVM(t, d, vm)
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	if st.Hypervisor != "qemu" || st.Memory != 64 || !alive(st.PID) {
		t.Fatalf("status: %+v", st)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
}

// waitVM waits until the daemon knows a VM, looking again at every event.
func waitVM(t *testing.T, d *daemonProc, name string) {
	t.Helper()
	d.waitEvents("", "the daemon to pick up the new VM "+name, func(c context.Context) (bool, string) {
		_, err := d.c.Get(c, name)
		return err == nil, fmt.Sprint(err)
	})
}

// A cloud_init section reaches QEMU through the daemon: the seed is in the
// VM's run directory when it runs, and an edited user-data file is on the
// seed of the next start.
func TestCloudInitThroughDaemon(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	t.Parallel()
	e := newEnv(t)
	ud := filepath.Join(e.work, "user-data")
	e.writeFile(ud, "#cloud-config\nruncmd: [ [ echo, first ] ]\n")
	vm := e.addVM("seeded", `    hypervisor = qemu;
    memory = 64;
    stop_timeout = 2s;
    qemu { accel = tcg; serial = false; }
    cloud_init { user_data = "`+ud+`"; hostname = seeded-host; }
`)
	d := e.start()
	seed := filepath.Join(e.runDir, vm, "cidata.iso")
	for _, want := range []string{"first", "second"} {
		d.do(vm, api.ActionStart)
		d.waitState(vm, api.StateRunning)
		files, err := cloudinit.ReadISO(seed)
		if err != nil {
			t.Fatalf("seed of the running VM: %v", err)
		}
		if !strings.Contains(string(files["user-data"]), want) || !strings.Contains(string(files["meta-data"]), `local-hostname: "seeded-host"`) {
			t.Errorf("seed: %q, want user-data with %q", files, want)
		}
		d.do(vm, api.ActionStop)
		d.waitState(vm, api.StateStopped)
		e.writeFile(ud, "#cloud-config\nruncmd: [ [ echo, second ] ]\n")
	}
}
