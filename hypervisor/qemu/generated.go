package qemu

import (
	"fmt"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/trust"
)

// maxConfigFile bounds a user's QEMU configfile.
const maxConfigFile = 1 << 20

// generateConfig writes spec.ConfigFile combined with the generated
// settings to ConfigFile+".generated" and returns its path.
func generateConfig(spec hypervisor.Spec, o Options, accel string) (string, error) {
	// QEMU reads it as instructions: the trust rule applies to a root
	// daemon, and only a regular file of bounded size is read.
	user, err := trust.ReadFile(spec.ConfigFile, trust.Strict(), maxConfigFile)
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
