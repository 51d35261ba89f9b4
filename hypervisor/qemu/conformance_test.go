package qemu

import (
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
	"github.com/vmstated/vmstated/internal/testguest"
)

// TestConformance runs the shared driver suite against real QEMU under
// TCG. Both kinds of VM boot the test guest with its console on QEMU's
// stdout; the stubborn one is told on its kernel command line to ignore
// the power button.
func TestConformance(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots Linux guests; skipped with -short")
	}
	kernel, initrd := testguest.Build(t)
	drivertest.Run(t, drivertest.Harness{
		NewDriver: func() hypervisor.Driver { return New() },
		Spec: func(t *testing.T, kind drivertest.Kind) hypervisor.Spec {
			cmdline := "console=ttyS0 quiet"
			if kind == drivertest.Stubborn {
				cmdline += " " + testguest.Stubborn
			}
			return hypervisor.Spec{
				Name: "conformance", MemoryMB: 128, CPUs: 1,
				Options: &Options{Accel: "tcg", Kernel: kernel, Initrd: initrd, Append: cmdline,
					ExtraArgs: []string{"-serial", "stdio"}},
			}
		},
		OutputMarker: testguest.ReadyLine,
		Timeout:      3 * time.Minute,
	})
}
