//go:build linux

package tests

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
)

// A guest running the real qemu-ga: the address its init configured is
// in the status (JSON and table), also after a daemon restart; info
// shows its host name and OS; and stop_method = agent powers it off
// through the agent, although the guest ignores the ACPI power button
// (no button driver, no acpid) and the stop timeout is far away.
func TestGuestAgent(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Agent(t)
	e := newEnv(t)
	vm := e.addVM("agent", fmt.Sprintf(`    hypervisor = qemu;
    memory = 128;
    stop_timeout = 10min;
    qemu { accel = tcg; kernel = %q; initrd = %q; append = "console=ttyS0 quiet"; guest_agent = true; stop_method = agent; }
`, kernel, initrd))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	e.waitLog(vm, testguest.ReadyLine)
	hasAddr := func(st api.Status) bool { return slices.Contains(st.IPAddresses, testguest.AgentAddress) }
	d.waitStatus(vm, "showing the guest's address", hasAddr)

	out, errs, code := e.ctl("-o", "json", "status", vm)
	var st api.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !hasAddr(st) {
		t.Errorf("status -o json: exit %d, %q %q; want ip_addresses with %s", code, out, errs, testguest.AgentAddress)
	}
	if out, _, _ := e.ctl("status"); !strings.Contains(out, "ADDRESS") || !strings.Contains(out, testguest.AgentAddress) {
		t.Errorf("the status table lacks the address:\n%s", out)
	}
	if out, _, _ := e.ctl("status", vm); !regexp.MustCompile(`ip addresses:\s+` + regexp.QuoteMeta(testguest.AgentAddress)).MatchString(out) {
		t.Errorf("vmstatedctl status %s lacks the address:\n%s", vm, out)
	}
	out, errs, code = e.ctl("info", vm)
	if code != 0 || !strings.Contains(out, testguest.AgentHostname) || !strings.Contains(out, testguest.AgentOSName) {
		t.Errorf("info: exit %d, %q %q; want host name %q and OS %q", code, out, errs, testguest.AgentHostname, testguest.AgentOSName)
	}

	// A restarted daemon takes the agent over with the VM.
	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d", code)
	}
	d = e.start()
	d.waitStatus(vm, "showing the guest's address after a daemon restart", hasAddr)

	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st = d.waitState(vm, api.StateStopped)
	if x := st.LastExit; x == nil || x.Reason != "poweroff" || x.Detail != "guest-shutdown" {
		t.Errorf("last exit %+v, want poweroff (guest-shutdown): the agent did not power the guest off", st.LastExit)
	}
	if log := e.readLog(vm); strings.Contains(log, "ACPI power button instead") {
		t.Errorf("the stop fell back to ACPI:\n%s", log)
	}
	if len(st.IPAddresses) != 0 {
		t.Errorf("a stopped VM shows addresses %v", st.IPAddresses)
	}
}
