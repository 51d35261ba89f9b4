package qemu

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/internal/testguest"
)

// The test guest (package testguest) powers off on the ACPI power button.

func TestQEMURealGuestPowerOff(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Build(t)
	spec := hypervisor.Spec{
		Name: "guest", RunDir: runDir(t), MemoryMB: 128, CPUs: 1,
		Options: &Options{Accel: "tcg", Serial: true, ExtraArgs: []string{
			"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet",
		}},
	}
	inst := start(t, &Driver{}, spec)

	// Wait for the readiness line on the serial console.
	conn, err := net.Dial("unix", inst.Handle().Sockets["serial"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
	sc := bufio.NewScanner(conn)
	ready := false
	var console []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		console = append(console, line)
		if line == testguest.ReadyLine {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("the guest never became ready (%v); console:\n%s", sc.Err(), strings.Join(console, "\n"))
	}

	t0 := time.Now()
	if err := inst.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The supervisor's default stop_timeout; the guest is expected well
	// inside it (tens of milliseconds), but only a hang fails the test.
	const stopTimeout = 60 * time.Second
	select {
	case <-inst.Done():
	case <-time.After(stopTimeout):
		t.Fatal("the guest did not power off on the ACPI power button within the stop timeout")
	}
	t.Logf("powered off %v after Shutdown", time.Since(t0).Round(time.Millisecond))
	e, _ := inst.Exit()
	if e.Reason != hypervisor.ExitPoweroff || e.Detail != "guest-shutdown" || e.Code != 0 {
		t.Errorf("exit %+v, want poweroff (guest-shutdown) with status 0", e)
	}
}
