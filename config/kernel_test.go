package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirectKernelBoot(t *testing.T) {
	tests := []struct {
		name   string
		qemu   string
		kernel bool // the kernel file exists
		errKey string
		errMsg string
	}{
		{name: "all three", kernel: true,
			qemu: `kernel = vmlinuz; initrd = initrd.gz; append = "console=ttyS0 quiet";`},
		{name: "kernel alone", kernel: true, qemu: `kernel = vmlinuz;`},
		{name: "missing kernel file", qemu: `kernel = vmlinuz;`,
			errKey: "qemu.kernel", errMsg: "no such file or directory"},
		{name: "initrd without kernel", kernel: true, qemu: `initrd = initrd.gz;`,
			errKey: "qemu.initrd", errMsg: "needs kernel"},
		{name: "append without kernel", qemu: `append = "console=ttyS0";`,
			errKey: "qemu.append", errMsg: "needs kernel"},
		{name: "append with a newline", kernel: true, qemu: `kernel = vmlinuz; append = "a\nb";`,
			errKey: "qemu.append", errMsg: "newline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.kernel {
				if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("k"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "initrd.gz"), []byte("i"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := "vm1 {\n  hypervisor = qemu;\n  qemu { " + tc.qemu + " }\n}\n"
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			vm, diags := LoadDir(dir, LoadOptions{})
			if tc.errKey != "" {
				found := false
				for _, d := range diags {
					if d.Severity == Error && d.Key == tc.errKey && strings.Contains(d.Msg, tc.errMsg) {
						found = true
					}
				}
				if !found {
					t.Fatalf("diagnostics %v, want an error on %s saying %q", diags, tc.errKey, tc.errMsg)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			q := vm.QEMU
			if q.Kernel != filepath.Join(dir, "vmlinuz") {
				t.Errorf("kernel = %q, want the file in the VM directory", q.Kernel)
			}
			if strings.Contains(tc.qemu, "initrd") && q.Initrd != filepath.Join(dir, "initrd.gz") {
				t.Errorf("initrd = %q", q.Initrd)
			}
			if strings.Contains(tc.qemu, "append") && q.Append != "console=ttyS0 quiet" {
				t.Errorf("append = %q", q.Append)
			}
		})
	}
}
