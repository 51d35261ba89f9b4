package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVNCKeys(t *testing.T) {
	tests := []struct {
		qemu, vnc, password string
		err                 string // in the error on qemu.vnc_password or qemu.vnc
	}{
		{qemu: `vnc = auto;`, vnc: "auto"},
		{qemu: `vnc = auto; vnc_password = "s3cret";`, vnc: "auto", password: "s3cret"},
		{qemu: `vnc = unix; vnc_password = "12345678";`, vnc: "unix", password: "12345678"},
		{qemu: `vnc_password = "s3cret";`, err: "needs vnc"},
		{qemu: `vnc = auto; vnc_password = auto;`, vnc: "auto"},
		{qemu: `vnc_password = auto;`, err: "needs vnc"},
		{qemu: `vnc = auto; vnc_password = "123456789";`, err: "at most 8"},
		{qemu: `vnc = maybe;`, err: "auto (the daemon relays"},
		{qemu: `vnc = auto; vnc_listen = "::1";`, vnc: "auto"},
		{qemu: `vnc = auto; vnc_listen = "localhost";`, err: "not an IP address"},
		{qemu: `vnc = unix; vnc_listen = "127.0.0.1";`, err: "needs vnc = auto"},
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
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.err) {
					t.Fatalf("diagnostics %v, want an error saying %q", diags, tc.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			if vm.QEMU.VNC != tc.vnc || vm.QEMU.VNCPassword != tc.password {
				t.Errorf("vnc %q password %q, want %q %q", vm.QEMU.VNC, vm.QEMU.VNCPassword, tc.vnc, tc.password)
			}
		})
	}
}
