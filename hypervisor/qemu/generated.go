package qemu

import (
	"fmt"

	"github.com/vmstated/vmstated/hypervisor"
)

// generateConfig writes spec.ConfigFile combined with the generated
// settings to ConfigFile+".generated" and returns its path.
func generateConfig(spec hypervisor.Spec) (string, error) {
	return "", fmt.Errorf("qemu: configfile %s: %w", spec.ConfigFile, hypervisor.ErrNotSupported)
}
