//go:build linux

package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/config"
)

// testUser is an account made for one test with useradd and removed
// after it.
type testUser struct {
	name     string
	uid, gid int
}

func newUser(t *testing.T, short string) testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test makes a user with useradd")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed")
	}
	name := "v" + short + runID
	if out, err := exec.Command("useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return testUser{name, uid, gid}
}

func chownTo(t *testing.T, u testUser, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Lchown(p, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// A VM's owner may control it through the socket, but nothing a user can
// write is ever read as instructions or run by a root daemon: a config in
// a user's directory, an include, a program, a QEMU binary or configfile
// of the user's. Each is refused with the rule in the error, and nothing
// of the user's runs.
func TestTrustUserFiles(t *testing.T) {
	alice := newUser(t, "a")
	t.Parallel()
	e := newEnv(t)
	// Her own directory, next to the config root.
	home := filepath.Join(e.dir, "alice")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(e.work, "ran-as-root")
	evil := filepath.Join(home, "evil")
	e.writeFile(evil, "#!/bin/sh\nid -u >> "+marker+"\nexec sleep 1000\n")
	if err := os.Chmod(evil, 0o755); err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(home, "inc.conf")
	e.writeFile(inc, "exec { command = [ \""+evil+"\" ]; }\n")
	qcfg := filepath.Join(home, "qemu.cfg")
	e.writeFile(qcfg, "[machine]\n  type = \"q35\"\n")
	chownTo(t, alice, home, evil, inc, qcfg)

	owned := e.addVM("owned", execVM([]string{"/bin/sh", "-c", "id -u >> " + marker + "; exec sleep 1000"}, "")+
		fmt.Sprintf("    owner = %s;\n", alice.name))
	chownTo(t, alice, filepath.Join(e.root, owned))
	included := e.addVM("incl", "    hypervisor = exec;\n    .include \""+inc+"\"\n")
	program := e.addVM("prog", execVM([]string{evil}, ""))
	qbin := e.addVM("qbin", "    hypervisor = qemu;\n    qemu { binary = \""+evil+"\"; accel = tcg; }\n")
	qconf := e.addVM("qconf", "    hypervisor = qemu;\n    configfile = \""+qcfg+"\";\n    qemu { accel = tcg; }\n")
	good := e.addVM("good", sleeper(""))

	want := map[string]string{
		owned:    "directory " + filepath.Join(e.root, owned) + " is owned by uid " + strconv.Itoa(alice.uid) + ", not root",
		included: inc + ": directory " + home + " is owned by uid " + strconv.Itoa(alice.uid),
		program:  "program refused: " + evil + ": directory " + home + " is owned by uid",
		qbin:     "qemu.binary: program refused: " + evil,
		qconf:    "configfile: refused: " + qcfg + ": directory " + home + " is owned by uid",
	}
	d := e.start()
	for vm, msg := range want {
		st := d.get(vm)
		if !strings.Contains(st.ConfigError, msg) {
			t.Errorf("%s: config error %q does not say %q", vm, st.ConfigError, msg)
		}
		if _, err := d.c.Do(ctx(t), vm, api.ActionStart, nil); err == nil {
			t.Errorf("%s: start accepted", vm)
		}
	}
	d.do(good, api.ActionStart)
	d.waitUp(good)
	// `vmstated -n` refuses the same, naming the same rule.
	_, errOut, code := e.run(vmstatedBin, "-n", "-c", e.root)
	if code != 1 {
		t.Errorf("vmstated -n: exit %d, want 1", code)
	}
	for vm, msg := range want {
		if !strings.Contains(errOut, msg) {
			t.Errorf("vmstated -n does not say, for %s, %q:\n%s", vm, msg, errOut)
		}
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("the user's program ran as uid %s", strings.Fields(string(b)))
	}
}

// Includes that are devices or FIFOs, a config of 50 MB and one whose
// values do not fit a hook's environment are refused at once, by the
// daemon (which becomes ready and keeps reloading the other VMs) and by
// `vmstated -n`.
func TestTrustHostileConfigs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fifo := filepath.Join(e.work, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := e.addVM("zero", sleeper("    .include \"/dev/zero\"\n"))
	urandom := e.addVM("urandom", sleeper("    .include \"/dev/urandom\"\n"))
	pipe := e.addVM("fifo", sleeper("    .include \""+fifo+"\"\n"))
	huge := e.addVM("huge", sleeper(""))
	var b strings.Builder
	b.WriteString(huge + " {\n" + sleeper(""))
	for i := 0; b.Len() < 50<<20; i++ {
		fmt.Fprintf(&b, "    key%d = %d;\n", i, i)
	}
	b.WriteString("}\n")
	e.writeFile(filepath.Join(e.root, huge, "config"), b.String())
	long := e.addVM("long", sleeper("    notes = \""+strings.Repeat("n", 300<<10)+"\";\n"))
	good := e.addVM("good", sleeper("    description = \"before\";\n"))
	want := map[string]string{
		zero:    "/dev/zero is a character device, not a regular file",
		urandom: "/dev/urandom is a character device, not a regular file",
		pipe:    fifo + " is a named pipe (FIFO), not a regular file",
		huge:    "larger than 512 KiB (the limit for one config file)",
		long:    "too long for a hook's environment",
	}

	d := e.start() // returns once READY=1: loading never blocked
	for vm, msg := range want {
		if st := d.get(vm); !strings.Contains(st.ConfigError, msg) {
			t.Errorf("%s: config error %q does not say %q", vm, st.ConfigError, msg)
		}
	}
	_, errOut, code := e.run(vmstatedBin, "-n", "-c", e.root)
	if code != 1 {
		t.Errorf("vmstated -n: exit %d, want 1", code)
	}
	for vm, msg := range want {
		if !strings.Contains(errOut, msg) {
			t.Errorf("vmstated -n does not say, for %s, %q", vm, msg)
		}
	}
	// The watcher is not stuck on any of them: a change to another VM is
	// seen, and a reload applies it.
	e.writeConfig(good, sleeper("    description = \"after\";\n"))
	if _, err := d.c.Reload(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// The reload returns once its changes are in effect.
	if st := d.get(good); st.Description != "after" {
		t.Errorf("%s's description is %q right after the reload, want after", good, st.Description)
	}
	d.do(good, api.ActionStart)
	d.waitUp(good)
}

// Names and text from a config never reach a path or a terminal raw: a
// section named "../../tmp/x" does not become a VM of that name (its
// directory's name stands in), a description with a newline is refused,
// and `vmstated -n` refuses a nic model that a launch would refuse.
func TestTrustNamesAndText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dotted := e.addVM("dots", "")
	e.writeFile(filepath.Join(e.root, dotted, "config"), "\"../../tmp/x\" {\n"+sleeper("")+"}\n")
	desc := e.addVM("desc", sleeper("    description = \"ok\\nfake-vm  running  1\";\n"))
	d := e.start()

	list, err := d.c.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if strings.ContainsAny(st.Name, "/\n") || strings.Contains(st.Name, "..") {
			t.Errorf("a VM is listed as %q", st.Name)
		}
	}
	if st := d.get(dotted); !strings.Contains(st.ConfigError, "must start with a letter") {
		t.Errorf("%s: config error %q", dotted, st.ConfigError)
	}
	// The log of the name the section claimed is not served from
	// anywhere.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(c2 context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(c2, "unix", e.socket)
	}}}
	resp, err := hc.Get("http://vmstated/v1/vms/..%2F..%2Ftmp%2Fx/log")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("GET the log of ../../tmp/x: %s", resp.Status)
	}
	st := d.get(desc)
	if !strings.Contains(st.ConfigError, `control character '\n'`) || strings.Contains(st.Description, "\n") {
		t.Errorf("%s: config error %q, description %q", desc, st.ConfigError, st.Description)
	}
	out, _, _ := e.ctl("status")
	if strings.Contains(out, "fake-vm") {
		t.Errorf("the status table shows the description's second line:\n%s", out)
	}
	d.term()

	// -n runs the launch's checks.
	nic := filepath.Join(e.dir, "nicroot")
	if err := os.MkdirAll(filepath.Join(nic, "n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile(filepath.Join(nic, "n", "config"), "n {\n    hypervisor = qemu;\n    qemu { accel = tcg; nic { type = user; model = \"e1000,romfile=x\"; } }\n}\n")
	_, errOut, code := e.run(vmstatedBin, "-n", "-c", nic)
	if code != 1 || !strings.Contains(errOut, `model "e1000,romfile=x"`) {
		t.Errorf("vmstated -n on a nic model a launch refuses: exit %d: %s", code, errOut)
	}
}

// QEMU started by a root daemon runs under seccomp and, with
// qemu { user = ...; }, as that user, which still takes screenshots.
func TestTrustQEMUSandbox(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	q := newUser(t, "q")
	t.Parallel()
	e := newEnv(t)
	body := "    hypervisor = qemu;\n    memory = 64;\n    stop_timeout = 1;\n    qemu { accel = tcg; serial = false; %s }\n"
	asUser := e.addVM("qsbu", fmt.Sprintf(body, "vga = std; user = "+q.name+";"))
	asRoot := e.addVM("qsbr", fmt.Sprintf(body, ""))
	d := e.start()
	for vm, uid := range map[string]int{asUser: q.uid, asRoot: 0} {
		d.do(vm, api.ActionStart)
		st := d.waitState(vm, api.StateRunning)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
		if err != nil {
			t.Fatal(err)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.TrimSpace(v)
		}
		if u := strings.Fields(fields["Uid"]); len(u) != 4 || u[0] != strconv.Itoa(uid) || u[1] != u[0] || u[2] != u[0] || u[3] != u[0] {
			t.Errorf("%s: QEMU runs with Uid %q, want %d everywhere", vm, fields["Uid"], uid)
		}
		if fields["Seccomp"] != "2" {
			t.Errorf("%s: QEMU has Seccomp %q, want 2 (filtered)", vm, fields["Seccomp"])
		}
		if vm == asUser {
			// QEMU as its user cannot open anything in the run
			// directory; the screendump goes through a descriptor.
			var img bytes.Buffer
			if format, err := d.c.Screenshot(ctx(t), vm, &img); err != nil || format != "png" || img.Len() == 0 {
				t.Errorf("%s: screenshot of a QEMU running as %s: %q, %d bytes, %v", vm, q.name, format, img.Len(), err)
			}
		}
		d.do(vm, api.ActionStop)
		d.waitState(vm, api.StateStopped)
	}
}

// The daemon's -U names the user of every QEMU VM whose config names
// none.
func TestTrustQEMUDefaultUser(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	q := newUser(t, "d")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("qdef", "    hypervisor = qemu;\n    memory = 64;\n    stop_timeout = 1;\n    qemu { accel = tcg; serial = false; }\n")
	if _, errOut, code := e.run(vmstatedBin, "-n", "-U", q.name, "-c", e.root); code != 0 {
		t.Fatalf("vmstated -n -U %s: exit %d: %s", q.name, code, errOut)
	}
	if _, errOut, code := e.run(vmstatedBin, "-n", "-U", "no-such-user-"+runID, "-c", e.root); code != 1 || !strings.Contains(errOut, "(-U)") {
		t.Errorf("vmstated -n with an unknown -U user: exit %d: %s", code, errOut)
	}
	d := e.start("-U", q.name)
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), fmt.Sprintf("\nUid:\t%d\t%d\t%d\t%d\n", q.uid, q.uid, q.uid, q.uid)) || !strings.Contains(string(status), "\nSeccomp:\t2\n") {
		t.Errorf("QEMU of a daemon run with -U %s:\n%s", q.name, status)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
}

// A program named in a config is checked again when it is launched, not
// only when the config loaded: a directory on its path handed to a user
// afterwards (nothing in a VM directory changed, so no reload) makes the
// next start fail with the rule in the reason, and nothing of the user's
// runs as root.
func TestTrustProgramCheckedAtLaunch(t *testing.T) {
	bob := newUser(t, "b")
	t.Parallel()
	e := newEnv(t)
	bin := filepath.Join(e.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(e.work, "ran-as-root")
	prog := filepath.Join(bin, "prog")
	e.writeFile(prog, "#!/bin/sh\nid -u >> "+marker+"\nexec sleep 1000\n")
	if err := os.Chmod(prog, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := e.addVM("late", execVM([]string{prog}, ""))
	d := e.start()
	if st := d.get(vm); st.ConfigError != "" {
		t.Fatalf("%s: config error %q while the program is root's", vm, st.ConfigError)
	}
	// Now the directory is Bob's, and so is what it holds.
	chownTo(t, bob, bin, prog)
	if _, err := d.c.Start(ctx(t), vm); err != nil {
		t.Fatal(err)
	}
	st := d.waitState(vm, api.StateFailed)
	if want := "directory " + bin + " is owned by uid " + strconv.Itoa(bob.uid); !strings.Contains(st.Reason, want) {
		t.Errorf("%s failed with %q, which does not say %q", vm, st.Reason, want)
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("the user's program ran as uid %s", strings.Fields(string(b)))
	}
}

// A config that passes the caps on values gives hooks that start: values
// right at the limit for one environment string, and together right at
// the limit for all of them, reach every hook of a start.
func TestHookEnvAtTheLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Three VMSTATED_CFG_BGn=... strings of config.MaxHookVar bytes, and
	// a fourth that brings all of them within 4 KiB of config.MaxHookEnv
	// (the VM's other values take some of the rest).
	value := strings.Repeat("v", config.MaxHookVar-len("VMSTATED_CFG_bg1="))
	last := strings.Repeat("v", config.MaxHookEnv-3*(config.MaxHookVar+1)-4096)
	vm := e.addVM("envmax", sleeper("    .include \"a.conf\"\n    .include \"b.conf\"\n"))
	e.writeFile(filepath.Join(e.root, vm, "a.conf"), "bg1 = \""+value+"\";\nbg2 = \""+value+"\";\n")
	e.writeFile(filepath.Join(e.root, vm, "b.conf"), "bg3 = \""+value+"\";\nbg4 = \""+last+"\";\n")
	d := e.start()
	if st := d.get(vm); st.ConfigError != "" {
		t.Fatalf("%s: config error %q", vm, st.ConfigError)
	}
	if _, errOut, code := e.run(vmstatedBin, "-n", "-c", e.root); code != 0 {
		t.Fatalf("vmstated -n: exit %d: %s", code, errOut)
	}
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	for _, st := range []string{"start_network", "start_storage", "running"} {
		if !strings.Contains(e.readLog(vm), "hook "+st+" of "+vm+" says hello") {
			t.Errorf("the %s hook did not run:\n%s", st, e.readLog(vm))
		}
	}
}
