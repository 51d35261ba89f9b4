package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuestAgentKeys(t *testing.T) {
	tests := []struct {
		qemu  string
		agent bool
		stop  string
		err   string // in the diagnostics
	}{
		{qemu: ``, stop: "acpi"},
		{qemu: `guest_agent = true;`, agent: true, stop: "acpi"},
		{qemu: `guest_agent = true; stop_method = agent;`, agent: true, stop: "agent"},
		{qemu: `stop_method = agent;`, err: "needs guest_agent = true"},
		{qemu: `guest_agent = true; stop_method = signal;`, err: "stop_method"},
		{qemu: `guest_agent = maybe;`, err: "guest_agent"},
	}
	for _, tc := range tests {
		t.Run(tc.qemu, func(t *testing.T) {
			dir := t.TempDir()
			cfg := "vm1 {\n  hypervisor = qemu;\n  qemu { " + tc.qemu + " }\n}\n"
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			vm, diags := LoadDir(dir, LoadOptions{})
			if tc.err != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.err) || !strings.Contains(diags.Error(), "config:3:") {
					t.Fatalf("diagnostics %v, want an error at config:3 saying %q", diags, tc.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			if vm.QEMU.GuestAgent != tc.agent || vm.QEMU.StopMethod != tc.stop {
				t.Errorf("guest_agent %v stop_method %q, want %v %q", vm.QEMU.GuestAgent, vm.QEMU.StopMethod, tc.agent, tc.stop)
			}
		})
	}
}
