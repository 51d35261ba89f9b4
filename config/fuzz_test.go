package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadDir feeds arbitrary bytes as a config file: loading must never
// panic, and a config that loads has a valid name.
func FuzzLoadDir(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/roots/*/*/config")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("vm { memory = 2G; qemu { disk { path = x; } nic { type = tap; ifname = t; } } }"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "config"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		vm, diags := LoadDir(dir, LoadOptions{})
		if vm != nil {
			if err := ValidateName(vm.Name); err != nil {
				t.Errorf("loaded VM with bad name %q: %v", vm.Name, err)
			}
			if diags.HasErrors() {
				t.Errorf("VM returned with errors: %v", diags)
			}
		} else if !diags.HasErrors() {
			t.Error("no VM and no error")
		}
	})
}
