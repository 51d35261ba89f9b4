package qemu

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/internal/testguest"
)

// The real qemu-ga in the agent guest: its address, host name and OS
// come through the driver, and stop method agent powers it off although
// the guest ignores the ACPI power button.
func TestQEMUGuestAgent(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Agent(t)
	con := newConsoleLines()
	out := &lockedBuffer{}
	spec := hypervisor.Spec{
		Name: "agent", RunDir: runDir(t), MemoryMB: 128, CPUs: 1, Console: con, Output: out,
		Options: &Options{Accel: "tcg", Serial: true, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 quiet",
			GuestAgent: true, StopMethod: StopAgent},
	}
	inst := start(t, &Driver{}, spec)
	ga := inst.(hypervisor.GuestAgent)
	if !ga.HasGuestAgent() || inst.Handle().Sockets["qga"] == "" {
		t.Fatalf("no agent channel in the handle: %+v", inst.Handle().Sockets)
	}
	con.wait(t, testguest.ReadyLine)

	ifs, err := ga.GuestInterfaces(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := testguest.AgentAddress + "/24"
	if !slices.ContainsFunc(ifs, func(f hypervisor.GuestInterface) bool { return slices.Contains(f.Addresses, want) }) {
		t.Errorf("interfaces %+v lack %s", ifs, want)
	}
	d, err := ga.GuestDetails(testCtx(t))
	if err != nil || d.Hostname != testguest.AgentHostname || d.OS != testguest.AgentOSName || d.Kernel == "" || d.AgentVersion == "" {
		t.Errorf("details %+v, %v", d, err)
	}

	if err := inst.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, inst)
	if e.Reason != hypervisor.ExitPoweroff || e.Detail != "guest-shutdown" {
		t.Errorf("exit %+v, want poweroff (guest-shutdown)", e)
	}
	if strings.Contains(out.String(), "ACPI power button instead") {
		t.Errorf("the agent path fell back to ACPI: %s", out.String())
	}
}

// A guest with the channel but no agent: every call ends within its
// bound, and stop method agent falls back to the ACPI button.
func TestQEMUGuestAgentAbsent(t *testing.T) {
	needQEMU(t)
	out := &lockedBuffer{}
	spec := diskless(t, &Options{GuestAgent: true, StopMethod: StopAgent})
	spec.Output = out
	inst := start(t, &Driver{}, spec)
	ga := inst.(hypervisor.GuestAgent)
	// testCtx is far longer than the driver's own bound, which is
	// what ends the call.
	if _, err := ga.GuestInterfaces(testCtx(t)); err == nil {
		t.Fatal("an absent agent answered")
	}
	if err := inst.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !strings.Contains(out.String(), "ACPI power button instead") {
		t.Errorf("no fallback to the ACPI button logged: %q", out.String())
	}

	// Without the channel, nothing is tried.
	plain := start(t, &Driver{}, diskless(t, nil)).(hypervisor.GuestAgent)
	if _, err := plain.GuestInterfaces(testCtx(t)); !errors.Is(err, hypervisor.ErrNotSupported) || plain.HasGuestAgent() {
		t.Errorf("without guest_agent: %v", err)
	}
}
