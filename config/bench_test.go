package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLoadRoot1000 loads a root of 1,000 VM directories, each a
// realistic config with a qemu section.
func BenchmarkLoadRoot1000(b *testing.B) {
	root := b.TempDir()
	for i := range 1000 {
		dir := filepath.Join(root, fmt.Sprintf("vm%04d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		cfg := fmt.Sprintf(`vm%04d {
    description = Benchmark VM number %d;
    hypervisor = qemu;
    memory = 2GB;
    cpus = 2;
    maxrestart = 3;
    maxrestarttime = 30s;
    stop_timeout = 60s;
    owner = root;
    autostart = true;
    hook_timeouts { start_storage = 300s; }
    qemu {
        accel = tcg;
        disk { path = /var/lib/vm/vm%04d.qcow2; format = qcow2; }
        nic { type = tap; ifname = tap%d; bridge = br0; }
        extra_args = [ "-device", "virtio-rng-pci" ];
    }
}
`, i, i, i, i)
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		snap := LoadRoot(root, LoadOptions{})
		if len(snap.VMs) != 1000 {
			b.Fatalf("loaded %d VMs: %v", len(snap.VMs), snap.Err())
		}
	}
}
