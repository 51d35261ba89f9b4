package supervisor

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A diskless QEMU under TCG: no guest OS, so it ignores the power button.
const qemuVM = `hypervisor = qemu; memory = 64; stop_timeout = 2;
	qemu { accel = tcg; vga = std; serial = false; }`

func needQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
}

func TestQEMUVMLifecycle(t *testing.T) {
	needQEMU(t)
	f := newFixture(t)
	dir := f.addVM("vm0", "")
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("vm0 {\n"+qemuVM+"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.sync()
	c := ctx(t)
	if err := f.sup.Start(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	first := f.waitPID("vm0")
	if first.Hypervisor != "qemu" || first.MemoryMB != 64 {
		t.Fatalf("status %+v", first)
	}
	info, err := f.sup.Info(c, "vm0")
	if err != nil || info["version"] == nil {
		t.Fatalf("info %v %v", info, err)
	}
	var img bytes.Buffer
	format, err := f.sup.Screenshot(c, "vm0", &img)
	if err != nil || img.Len() == 0 {
		t.Fatalf("screenshot: %s, %d bytes, %v", format, img.Len(), err)
	}
	if err := f.sup.Pause(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sPaused)
	if err := f.sup.Unpause(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)

	// A reset ends QEMU (-no-reboot); the VM comes back as after a user
	// restart, outside the restart budget.
	if err := f.sup.Reset(c, "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitPath("vm0", sStartNetwork, sStartStorage, sRunning, sPaused, sRunning, sRestarting, sRestarted, sRunning)
	after := f.waitPID("vm0")
	if after.PID == first.PID || after.Restarts != 0 {
		t.Fatalf("after reset: %+v (first pid %d)", after, first.PID)
	}

	// No OS answers the power button: the stop is forced after 2s.
	if err := f.sup.Stop(c, "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sStopped)
	if st.LastExit == nil || st.LastExit.Reason != "killed" {
		t.Fatalf("exit %+v", st.LastExit)
	}
	logPath, _ := f.sup.LogPath("vm0")
	data, _ := os.ReadFile(logPath)
	if !strings.Contains(string(data), "guest did not power off within 2s; forcing") {
		t.Fatalf("log:\n%s", data)
	}
}
