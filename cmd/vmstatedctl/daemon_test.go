package main

import (
	"github.com/vmstated/vmstated/supervisor"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealDaemon runs the vmstated binary and drives it with the built
// vmstatedctl. As root the daemon runs as nobody, so that its files stay
// under the test's directories (root's defaults are system paths).
func TestRealDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	if _, err := os.Stat("../vmstated"); err != nil {
		t.Skip("no cmd/vmstated in this tree")
	}
	base, err := os.MkdirTemp("", "vmreal")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	bin := filepath.Join(base, "bin")
	for _, c := range []string{"vmstated", "vmstatedctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../"+c).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	cfg := filepath.Join(base, "cfg")
	writeConfig(t, cfg, "demo", sleeper("demo", ""))
	home := filepath.Join(base, "home")
	runDir := filepath.Join(base, "run")
	for _, d := range []string{home, runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	daemonArgs := []string{"-f", "-c", cfg}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("running the daemon as nobody needs setpriv")
		}
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody")
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		for _, d := range []string{base, home, runDir, bin} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		cmd = exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=" + nobody.Gid, "--clear-groups",
			filepath.Join(bin, "vmstated")}, daemonArgs...)...)
	} else {
		cmd = exec.Command(filepath.Join(bin, "vmstated"), daemonArgs...)
	}
	cmd.Env = []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runDir, "PATH=/usr/bin:/bin"}
	var logb syncBuffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(guard):
			_ = cmd.Process.Kill()
		}
	}()
	waitOutput(t, &logb, "vmstated ready")
	sock := filepath.Join(runDir, "vmstated", "vmstated.sock")

	ctl := func(args ...string) (int, string) {
		c := exec.Command(filepath.Join(bin, "vmstatedctl"), append([]string{"-s", sock}, args...)...)
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := ctl("status"); code != 0 || !strings.Contains(out, "demo") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	if code, out := ctl("start", "-w", "demo"); code != 0 || !strings.Contains(out, "demo: running") {
		t.Fatalf("start -w: %d\n%s", code, out)
	}
	if code, out := ctl("stop", "-w", "demo"); code != 0 || !strings.Contains(out, "demo: stopped") {
		t.Fatalf("stop -w: %d\n%s", code, out)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(guard):
		t.Fatal("vmstated did not exit on SIGTERM")
	}
	if code, out := ctl("status"); code != exitUnreachable || !strings.Contains(out, sock) {
		t.Fatalf("status with the daemon gone: %d\n%s", code, out)
	}
}

// stop -w of a running VM whose directory was removed returns once the VM
// stopped, although the daemon drops the VM at that moment.
func TestStopWaitOfRemovedVM(t *testing.T) {
	d := startDaemon(t, map[string]string{"gone": sleeper("gone", "")})
	if code, _, errs := d.ctl(t, "start", "-w", "gone"); code != 0 {
		t.Fatalf("start -w: exit %d: %s", code, errs)
	}
	sub := d.sup.Bus().Subscribe(0)
	defer sub.Close()
	if err := os.RemoveAll(filepath.Join(d.root, "gone")); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for removed := false; !removed; {
		select {
		case e := <-sub.C():
			removed = e.VM == "gone" && e.Kind == supervisor.KindConfig && e.Reason == "removed"
		case <-timer.C:
			t.Fatal("the daemon never saw the directory go")
		}
	}
	done := make(chan int, 1)
	var out, errs string
	go func() {
		var code int
		code, out, errs = d.ctl(t, "stop", "-w", "gone")
		done <- code
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("stop -w: exit %d: %s%s", code, out, errs)
		}
	case <-timer.C:
		t.Fatal("stop -w of a VM whose directory is gone never returned")
	}
	if _, err := d.sup.Get("gone"); err == nil {
		t.Errorf("the VM is still known after it stopped with its directory gone")
	}
}
