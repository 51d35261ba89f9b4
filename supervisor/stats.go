package supervisor

import (
	"context"

	"github.com/vmstated/vmstated/hypervisor"
)

// Usage is what the host can tell about a VM's running hypervisor, for
// metrics. Each part is there only when the driver can give it.
type Usage struct {
	PID        int
	Block      []hypervisor.BlockStat
	BlockErr   error
	NetDevices []string
}

// Usage reads a running VM's counters straight from its hypervisor
// instance, without going through the VM's actor: a scrape never waits
// for, nor holds up, a VM's work. A VM without a hypervisor gives a zero
// Usage.
func (s *Supervisor) Usage(ctx context.Context, name string) (Usage, error) {
	st, err := s.Get(name)
	if err != nil || st.instance == nil {
		return Usage{}, err
	}
	u := Usage{PID: st.PID}
	if b, ok := st.instance.(hypervisor.BlockStatser); ok {
		u.Block, u.BlockErr = b.BlockStats(ctx)
	}
	if n, ok := st.instance.(hypervisor.NetDeviceser); ok {
		u.NetDevices = n.NetDevices()
	}
	return u, nil
}
