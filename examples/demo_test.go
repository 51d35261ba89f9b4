package examples

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoRuns runs examples/demo/run.sh, what "make demo" runs, from a
// copy of the tree: the daemon must come up, start the demo VMs, take one
// through its reboot, answer vmstatedctl, and on SIGINT to the whole
// process group (Ctrl-C, or timeout -s INT without a terminal) stop the
// VMs, show every line up to the last stopped hook, then end itself.
func TestDemoRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH; cannot build the binaries")
	}
	top := t.TempDir()
	bin := filepath.Join(top, "bin")
	for _, c := range []string{"vmstated", "vmstatedctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../cmd/"+c).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	copyDir(t, "demo", filepath.Join(top, "examples", "demo"), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(top, "examples", "demo", "run.sh"), bin)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	// Its own process group, so that a failed test can end it all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		ctl(t, top, bin, "stop", "-a", "-f")
	})

	var log strings.Builder
	sc := bufio.NewScanner(pr)
	seen := map[string]bool{}
	wants := []string{
		"vmstated runs in the foreground",
		"demo | ",
		"[hook start_network] would create tap-demo",
		"running -> restarting (auto_restart): guest reboot",
		"restarted -> running (done)",
	}
	for !seen[wants[len(wants)-1]] && sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		for _, w := range wants {
			if strings.Contains(line, w) {
				seen[w] = true
			}
		}
	}
	for _, w := range wants {
		if !seen[w] {
			t.Fatalf("the demo never printed %q:\n%s", w, log.String())
		}
	}

	out := ctl(t, top, bin, "-o", "json", "status", "demo")
	var st struct {
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Restarts int    `json:"restarts"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v: %s", err, out)
	}
	if st.State != "running" || st.PID == 0 || st.Restarts != 1 {
		t.Errorf("status = %+v, want running with one restart", st)
	}

	// CPUS and MEMORY as the README says the demo shows them: "-" for the
	// exec VM, which sets neither; the QEMU one's config sets 1 and 64.
	table := ctl(t, top, bin, "status")
	_, noQEMU := exec.LookPath("qemu-system-x86_64")
	qemuInstalled := noQEMU == nil
	for _, want := range [][3]string{{"demo", "-", "-"}, {"demo-qemu", "1", "64M"}} {
		found := false
		for _, line := range strings.Split(table, "\n") {
			f := strings.Fields(line)
			if len(f) <= 5 || f[0] != want[0] {
				continue
			}
			found = true
			if f[4] != want[1] || f[5] != want[2] {
				t.Errorf("status shows %s with CPUS %s MEMORY %s, want %s %s:\n%s", f[0], f[4], f[5], want[1], want[2], table)
			}
		}
		if !found && (want[0] == "demo" || qemuInstalled) {
			t.Errorf("status has no row for %s:\n%s", want[0], table)
		}
	}

	// The hypervisor processes, to see that the interrupt ends them.
	var pids []int
	out = ctl(t, top, bin, "-o", "json", "status")
	var list []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("status: %v: %s", err, out)
	}
	qemu := false
	for _, vm := range list {
		if vm.PID != 0 {
			pids = append(pids, vm.PID)
		}
		qemu = qemu || vm.Name == "demo-qemu"
	}
	// Should the daemon leave them behind, the test still ends them.
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// SIGINT to the whole process group, as Ctrl-C on a terminal or
	// timeout -s INT without one sends it: only the script may see it.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	if err := <-done; err != nil {
		t.Fatalf("run.sh after SIGINT: %v\n%s", err, log.String())
	}
	after := []string{"stopping -> stop_storage", "stop_network -> stopped",
		"demo | ", "[hook stopped] would tell monitoring that demo is down",
		"exiting; no VM is running", "demo: done"}
	if qemu {
		after = append(after, "demo-qemu has no operating system to answer the power button",
			"[hook stopped] would tell monitoring that demo-qemu is down")
	}
	for _, w := range after {
		if !strings.Contains(log.String(), w) {
			t.Errorf("after SIGINT the demo never printed %q:\n%s", w, log.String())
		}
	}
	// The pretend guest powers off cleanly: nothing of it is left for
	// the driver to kill, which would read as something gone wrong.
	if strings.Contains(log.String(), "left behind") || strings.Contains(log.String(), "[exec] Terminated") {
		t.Errorf("the demo guest's power-off was not clean (a process left behind, or the shell's report of its killed sleep):\n%s", log.String())
	}
	// The daemon's farewell comes after the last hook line.
	if i, j := strings.LastIndex(log.String(), "[hook stopped]"), strings.Index(log.String(), "exiting;"); i < 0 || j < i {
		t.Errorf("the daemon exited before the last stopped hook was shown:\n%s", log.String())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("hypervisor pid %d still runs after the demo ended", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(top, ".demo", "log", "demo.log")); err != nil {
		t.Errorf("the demo's log is not kept: %v", err)
	}
}

// ctl runs the demo's vmstatedctl; errors are the caller's to judge.
func ctl(t *testing.T, top, bin string, args ...string) string {
	t.Helper()
	sock := filepath.Join(top, ".demo", "run", "vmstated.sock")
	out, _ := exec.Command(filepath.Join(bin, "vmstatedctl"), append([]string{"-s", sock}, args...)...).Output()
	return string(out)
}
