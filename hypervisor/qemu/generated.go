package qemu

import (
	"fmt"
	"os"

	"github.com/vmstated/vmstated/hypervisor"
)

// generateConfig writes spec.ConfigFile combined with the generated
// settings to ConfigFile+".generated" and returns its path.
func generateConfig(spec hypervisor.Spec, o Options, accel string) (string, error) {
	user, err := os.ReadFile(spec.ConfigFile)
	if err != nil {
		return "", fmt.Errorf("qemu: reading configfile: %w", err)
	}
	content, err := hypervisor.CombineQEMUConfig(user, generatedSections(spec, o, accel))
	if err != nil {
		return "", fmt.Errorf("qemu: configfile %s: %w", spec.ConfigFile, err)
	}
	path, err := hypervisor.WriteGenerated(spec.ConfigFile, content)
	if err != nil {
		return "", fmt.Errorf("qemu: writing the generated config: %w", err)
	}
	return path, nil
}
