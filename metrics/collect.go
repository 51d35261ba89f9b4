package metrics

import (
	"context"
	"runtime"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The series. vmstated_* carry the label vm; libvirt_* the label domain,
// as the libvirt exporters do.
var (
	descUp         = desc("vmstated_up", "1: the daemon answers.")
	descBuild      = desc("vmstated_build_info", "The daemon's build; the value is 1.", "version", "revision", "goversion")
	descVMs        = desc("vmstated_vms", "VMs the daemon knows (that this scraper may see).")
	descConfigErrs = desc("vmstated_config_errors", "VMs whose config did not load (the previous one stays in force).")
	descRequests   = desc("vmstated_api_requests_total", "Control API requests answered, by HTTP status.", "code")
	descCutOffs    = desc("vmstated_event_readers_cut_off_total", "Event stream readers cut off, missing events, for reading too slowly.")

	descState       = desc("vmstated_vm_state", "1 for the VM's current state, 0 for the others.", "vm", "state")
	descDesired     = desc("vmstated_vm_desired_state", "The state the VM's user asked for (running or stopped), as its label; the value is 1.", "vm", "state")
	descConfigErr   = desc("vmstated_vm_config_error", "1 when the VM's config did not load.", "vm")
	descRestartsWin = desc("vmstated_vm_restarts", "Automatic restarts inside the current restart window.", "vm")
	descMaxRestart  = desc("vmstated_vm_maxrestart", "The restart budget: more automatic restarts than this in the window put the VM in failed.", "vm")
	descRestarts    = desc("vmstated_vm_restarts_total", "Automatic restarts (crash, reboot, per policy) since the daemon started.", "vm")
	descFailures    = desc("vmstated_vm_failures_total", "Times the VM entered failed since the daemon started.", "vm")
	descTransition  = desc("vmstated_vm_last_transition_timestamp_seconds", "When the VM entered its current state (Unix time).", "vm")
	descExits       = desc("vmstated_vm_exits_total", "Hypervisor exits since the daemon started, by reason (poweroff, reboot, crash, killed).", "vm", "reason")
	descLastExit    = desc("vmstated_vm_last_exit_timestamp_seconds", "When the hypervisor last ended (Unix time), by that exit's reason.", "vm", "reason")
	descHookRuns    = desc("vmstated_vm_hook_runs_total", "Hook runs, by state.", "vm", "state")
	descHookFails   = desc("vmstated_vm_hook_failures_total", "Hook runs that failed (timeouts included), by state.", "vm", "state")
	descHookTOs     = desc("vmstated_vm_hook_timeouts_total", "Hook runs stopped at hook_timeout, by state.", "vm", "state")
	descHookDur     = desc("vmstated_vm_hook_duration_seconds", "How long hooks took, by state.", "vm", "state")
	descReadopted   = desc("vmstated_vm_readoptions_total", "Times a running hypervisor of the VM was taken over: after a daemon restart, or found running before a launch.", "vm")

	descCPUs   = desc("libvirt_domain_info_virtual_cpus", "Number of virtual CPUs for the domain.", "domain")
	descMaxMem = desc("libvirt_domain_info_maximum_memory_bytes", "Maximum allowed memory of the domain, in bytes.", "domain")
	descCPU    = desc("libvirt_domain_info_cpu_time_seconds_total", "Amount of CPU time used by the domain's hypervisor process, in seconds.", "domain")
	descRSS    = desc("libvirt_domain_memory_stats_rss_bytes", "Resident Set Size of the process running the domain, in bytes.", "domain")

	descBlkRdBytes = desc("libvirt_domain_block_stats_read_bytes_total", "Number of bytes read from a block device, in bytes.", "domain", "target_device")
	descBlkRdReqs  = desc("libvirt_domain_block_stats_read_requests_total", "Number of read requests from a block device.", "domain", "target_device")
	descBlkWrBytes = desc("libvirt_domain_block_stats_write_bytes_total", "Number of bytes written to a block device, in bytes.", "domain", "target_device")
	descBlkWrReqs  = desc("libvirt_domain_block_stats_write_requests_total", "Number of write requests to a block device.", "domain", "target_device")
	descBlkFlush   = desc("libvirt_domain_block_stats_flush_requests_total", "Number of flush requests to a block device.", "domain", "target_device")
	descBlkRdTime  = desc("libvirt_domain_block_stats_read_time_seconds_total", "Total time spent on reads from a block device, in seconds.", "domain", "target_device")
	descBlkWrTime  = desc("libvirt_domain_block_stats_write_time_seconds_total", "Total time spent on writes to a block device, in seconds.", "domain", "target_device")

	descIfRxBytes = desc("libvirt_domain_interface_stats_receive_bytes_total", "Number of bytes received on a network interface, in bytes.", "domain", "target_device")
	descIfRxPkts  = desc("libvirt_domain_interface_stats_receive_packets_total", "Number of packets received on a network interface.", "domain", "target_device")
	descIfRxErrs  = desc("libvirt_domain_interface_stats_receive_errors_total", "Number of packet receive errors on a network interface.", "domain", "target_device")
	descIfRxDrops = desc("libvirt_domain_interface_stats_receive_drops_total", "Number of packet receive drops on a network interface.", "domain", "target_device")
	descIfTxBytes = desc("libvirt_domain_interface_stats_transmit_bytes_total", "Number of bytes transmitted on a network interface, in bytes.", "domain", "target_device")
	descIfTxPkts  = desc("libvirt_domain_interface_stats_transmit_packets_total", "Number of packets transmitted on a network interface.", "domain", "target_device")
	descIfTxErrs  = desc("libvirt_domain_interface_stats_transmit_errors_total", "Number of packet transmit errors on a network interface.", "domain", "target_device")
	descIfTxDrops = desc("libvirt_domain_interface_stats_transmit_drops_total", "Number of packet transmit drops on a network interface.", "domain", "target_device")
)

// view is one scrape's collector: what one scraper may see.
type view struct {
	m       *Metrics
	ctx     context.Context
	visible func(supervisor.Status) bool
	admin   bool
}

// Describe sends nothing: the series depend on the VMs, so the collector
// is unchecked.
func (v *view) Describe(chan<- *prometheus.Desc) {}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, val float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, val, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, val float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, val, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect writes every series of one scrape.
func (v *view) Collect(ch chan<- prometheus.Metric) {
	version, revision, gover := buildInfo()
	if gover == "unknown" {
		gover = runtime.Version()
	}
	gauge(ch, descUp, 1)
	gauge(ch, descBuild, 1, version, revision, gover)

	all := v.m.src.List()
	list := all[:0:0]
	configErrs := 0
	for _, st := range all {
		if v.visible == nil || v.visible(st) {
			list = append(list, st)
			if st.ConfigError != "" {
				configErrs++
			}
		}
	}
	gauge(ch, descVMs, float64(len(list)))
	gauge(ch, descConfigErrs, float64(configErrs))
	if v.admin {
		v.m.mu.Lock()
		codes := make([]int, 0, len(v.m.requests))
		for c := range v.m.requests {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			counter(ch, descRequests, float64(v.m.requests[c]), strconv.Itoa(c))
		}
		v.m.mu.Unlock()
		counter(ch, descCutOffs, float64(v.m.src.Bus().CutOffs()))
	}

	for _, st := range list {
		v.collectStatus(ch, st)
	}
	v.collectCounters(ch, list)

	ctx, cancel := context.WithTimeout(v.ctx, usageTimeout)
	defer cancel()
	for _, st := range list {
		if st.PID > 0 {
			v.collectUsage(ctx, ch, st)
		}
	}
}

func (v *view) collectStatus(ch chan<- prometheus.Metric, st supervisor.Status) {
	for _, s := range statemachine.States {
		gauge(ch, descState, boolValue(st.State == s), st.Name, string(s))
	}
	// One series: the desired state is one of two, and changes rarely.
	if st.Desired != "" {
		gauge(ch, descDesired, 1, st.Name, string(st.Desired))
	}
	gauge(ch, descConfigErr, boolValue(st.ConfigError != ""), st.Name)
	gauge(ch, descRestartsWin, float64(st.Restarts), st.Name)
	gauge(ch, descMaxRestart, float64(st.MaxRestart), st.Name)
	if !st.Since.IsZero() {
		gauge(ch, descTransition, float64(st.Since.UnixNano())/1e9, st.Name)
	}
	if x := st.LastExit; x != nil && !x.Time.IsZero() {
		gauge(ch, descLastExit, float64(x.Time.UnixNano())/1e9, st.Name, string(x.Reason))
	}
	gauge(ch, descCPUs, float64(st.CPUs), st.Name)
	gauge(ch, descMaxMem, float64(st.MemoryMB)*(1<<20), st.Name)
}

func (v *view) collectCounters(ch chan<- prometheus.Metric, list []supervisor.Status) {
	m := v.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range list {
		c := m.vms[st.Name]
		if c == nil {
			c = &vmCounters{}
		}
		counter(ch, descRestarts, float64(c.restarts), st.Name)
		counter(ch, descFailures, float64(c.failures), st.Name)
		counter(ch, descReadopted, float64(c.readoptions), st.Name)
		for _, r := range sortedKeys(c.exits) {
			counter(ch, descExits, float64(c.exits[r]), st.Name, r)
		}
		states := make([]string, 0, len(c.hooks))
		for s := range c.hooks {
			states = append(states, string(s))
		}
		sort.Strings(states)
		for _, s := range states {
			h := c.hooks[statemachine.State(s)]
			counter(ch, descHookRuns, float64(h.runs), st.Name, s)
			counter(ch, descHookFails, float64(h.failures), st.Name, s)
			counter(ch, descHookTOs, float64(h.timeouts), st.Name, s)
			buckets := make(map[float64]uint64, len(HookBuckets))
			var cum, timed uint64
			for i, b := range HookBuckets {
				cum += h.buckets[i]
				buckets[b] = cum
			}
			for _, n := range h.buckets {
				timed += n
			}
			// Runs longer than the last bucket count in +Inf only.
			ch <- prometheus.MustNewConstHistogram(descHookDur, timed+h.beyond, h.sum, buckets, st.Name, s)
		}
	}
}

func sortedKeys(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// collectUsage reads a running VM's process, block and tap counters.
func (v *view) collectUsage(ctx context.Context, ch chan<- prometheus.Metric, st supervisor.Status) {
	if p, err := readProc(st.PID); err == nil {
		counter(ch, descCPU, p.cpuSeconds, st.Name)
		gauge(ch, descRSS, float64(p.rssBytes), st.Name)
	}
	// One hypervisor that does not answer costs the others nothing.
	vctx, cancel := context.WithTimeout(ctx, perVMTimeout)
	defer cancel()
	u, err := v.m.src.Usage(vctx, st.Name)
	if err != nil {
		return
	}
	for _, b := range u.Block {
		counter(ch, descBlkRdBytes, float64(b.ReadBytes), st.Name, b.Device)
		counter(ch, descBlkRdReqs, float64(b.ReadOps), st.Name, b.Device)
		counter(ch, descBlkWrBytes, float64(b.WriteBytes), st.Name, b.Device)
		counter(ch, descBlkWrReqs, float64(b.WriteOps), st.Name, b.Device)
		counter(ch, descBlkFlush, float64(b.FlushOps), st.Name, b.Device)
		counter(ch, descBlkRdTime, float64(b.ReadNanos)/1e9, st.Name, b.Device)
		counter(ch, descBlkWrTime, float64(b.WriteNanos)/1e9, st.Name, b.Device)
	}
	for _, dev := range u.NetDevices {
		n, err := readNetDev(dev)
		if err != nil {
			continue
		}
		counter(ch, descIfRxBytes, float64(n.rxBytes), st.Name, dev)
		counter(ch, descIfRxPkts, float64(n.rxPackets), st.Name, dev)
		counter(ch, descIfRxErrs, float64(n.rxErrors), st.Name, dev)
		counter(ch, descIfRxDrops, float64(n.rxDrops), st.Name, dev)
		counter(ch, descIfTxBytes, float64(n.txBytes), st.Name, dev)
		counter(ch, descIfTxPkts, float64(n.txPackets), st.Name, dev)
		counter(ch, descIfTxErrs, float64(n.txErrors), st.Name, dev)
		counter(ch, descIfTxDrops, float64(n.txDrops), st.Name, dev)
	}
}
