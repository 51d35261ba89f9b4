package supervisor

import (
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor/qemu"
)

// CheckLaunch runs the checks a launch of c would run on the driver's own
// options, without launching anything, so that `vmstated -n` refuses what
// a start would refuse.
func CheckLaunch(c *config.VM) error {
	s := settingsFrom(c)
	if o, ok := s.spec.Options.(*qemu.Options); ok && o != nil {
		return o.Validate()
	}
	return nil
}
