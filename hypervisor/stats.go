package hypervisor

import "context"

// BlockStat is one block device's I/O counters since its hypervisor
// process started.
type BlockStat struct {
	// Device is the drive's id in the hypervisor ("disk0").
	Device     string
	ReadBytes  uint64
	WriteBytes uint64
	ReadOps    uint64
	WriteOps   uint64
	FlushOps   uint64
	// ReadNanos and WriteNanos are the time spent on reads and writes.
	ReadNanos  uint64
	WriteNanos uint64
}

// BlockStatser is an Instance that reports its block devices' counters
// (for metrics). It must not hold up the guest.
type BlockStatser interface {
	BlockStats(ctx context.Context) ([]BlockStat, error)
}

// NetDeviceser is an Instance whose guest NICs are host network devices
// (tap), named here so their counters can be read from the host.
type NetDeviceser interface {
	NetDevices() []string
}
