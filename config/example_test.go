package config_test

import (
	"fmt"

	"github.com/vmstated/vmstated/config"
)

func ExampleLoadRoot() {
	snap := config.LoadRoot("testdata/roots/valid", config.LoadOptions{DefaultHypervisor: config.HypervisorQEMU})
	for _, name := range snap.Names() {
		vm := snap.VMs[name]
		fmt.Printf("%s: %s, %d MB, stop within %v\n", name, vm.Hypervisor, vm.MemoryMB, vm.StopTimeout)
	}
	fmt.Println("errors:", snap.Err())
	// Output:
	// db: qemu, 1024 MB, stop within 1m0s
	// freebsd13: bhyve, 4096 MB, stop within 1m0s
	// lab: exec, 0 MB, stop within 1m0s
	// web: qemu, 2048 MB, stop within 1m30s
	// errors: <nil>
}
