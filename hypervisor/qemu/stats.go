package qemu

import (
	"context"
	"fmt"

	"github.com/vmstated/vmstated/hypervisor"
)

// blockStatsReply is the part of query-blockstats' answer metrics use.
type blockStatsReply struct {
	Device   string `json:"device"`
	NodeName string `json:"node-name"`
	QDev     string `json:"qdev"`
	Stats    struct {
		RdBytes      uint64 `json:"rd_bytes"`
		WrBytes      uint64 `json:"wr_bytes"`
		RdOperations uint64 `json:"rd_operations"`
		WrOperations uint64 `json:"wr_operations"`
		FlushOps     uint64 `json:"flush_operations"`
		RdTotalTime  uint64 `json:"rd_total_time_ns"`
		WrTotalTime  uint64 `json:"wr_total_time_ns"`
	} `json:"stats"`
}

// BlockStats reads the counters of every drive through QMP
// (query-blockstats), which QEMU answers from its main loop without
// stopping the guest's CPUs.
func (i *instance) BlockStats(ctx context.Context) ([]hypervisor.BlockStat, error) {
	var reply []blockStatsReply
	if err := i.command(ctx, "query-blockstats", nil, &reply); err != nil {
		return nil, err
	}
	out := make([]hypervisor.BlockStat, 0, len(reply))
	for n, r := range reply {
		dev := r.Device
		if dev == "" {
			dev = r.NodeName
		}
		if dev == "" {
			dev = fmt.Sprintf("block%d", n)
		}
		out = append(out, hypervisor.BlockStat{
			Device: dev, ReadBytes: r.Stats.RdBytes, WriteBytes: r.Stats.WrBytes,
			ReadOps: r.Stats.RdOperations, WriteOps: r.Stats.WrOperations, FlushOps: r.Stats.FlushOps,
			ReadNanos: r.Stats.RdTotalTime, WriteNanos: r.Stats.WrTotalTime,
		})
	}
	return out, nil
}

// NetDevices names the tap devices of the VM's NICs.
func (i *instance) NetDevices() []string {
	o, err := options(i.spec)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range o.NICs {
		if n.Type == "tap" {
			out = append(out, n.Ifname)
		}
	}
	return out
}

var (
	_ hypervisor.BlockStatser = (*instance)(nil)
	_ hypervisor.NetDeviceser = (*instance)(nil)
)
