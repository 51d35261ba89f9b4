package metrics

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// usageSource is a fakeSource whose VMs have a disk and a NIC.
type usageSource struct {
	*fakeSource
	usage supervisor.Usage
}

func (u *usageSource) Usage(context.Context, string) (supervisor.Usage, error) { return u.usage, nil }

// The series that mean what a libvirt exporter's mean carry its names and
// label names, so that a dashboard made for libvirt hosts shows vmstated
// hosts too. The process is this test's own, the NIC the host's loopback.
func TestLibvirtExporterNames(t *testing.T) {
	src := &usageSource{
		fakeSource: &fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}},
		usage: supervisor.Usage{PID: os.Getpid(), NetDevices: []string{"lo"},
			Block: []hypervisor.BlockStat{{Device: "disk0", ReadBytes: 512, ReadOps: 1}}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, src)
	src.set(supervisor.Status{Name: "web", State: statemachine.Running, Desired: statemachine.Running,
		Since: time.Now(), PID: os.Getpid(), CPUs: 2, MemoryMB: 512})
	text := scrapeOf(t, m, nil, true)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	domain := []string{"domain"}
	device := []string{"domain", "target_device"}
	// Names and labels as the libvirt exporters (kumina/libvirt_exporter
	// and its successors) publish them.
	want := map[string][]string{
		"libvirt_domain_info_virtual_cpus":                      domain,
		"libvirt_domain_info_maximum_memory_bytes":              domain,
		"libvirt_domain_info_cpu_time_seconds_total":            domain,
		"libvirt_domain_memory_stats_rss_bytes":                 domain,
		"libvirt_domain_block_stats_read_bytes_total":           device,
		"libvirt_domain_block_stats_read_requests_total":        device,
		"libvirt_domain_block_stats_write_bytes_total":          device,
		"libvirt_domain_block_stats_write_requests_total":       device,
		"libvirt_domain_block_stats_flush_requests_total":       device,
		"libvirt_domain_block_stats_read_time_seconds_total":    device,
		"libvirt_domain_block_stats_write_time_seconds_total":   device,
		"libvirt_domain_interface_stats_receive_bytes_total":    device,
		"libvirt_domain_interface_stats_receive_packets_total":  device,
		"libvirt_domain_interface_stats_receive_errors_total":   device,
		"libvirt_domain_interface_stats_receive_drops_total":    device,
		"libvirt_domain_interface_stats_transmit_bytes_total":   device,
		"libvirt_domain_interface_stats_transmit_packets_total": device,
		"libvirt_domain_interface_stats_transmit_errors_total":  device,
		"libvirt_domain_interface_stats_transmit_drops_total":   device,
	}
	for name, labels := range want {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("%s: not served once for one running VM", name)
			continue
		}
		var got []string
		for _, l := range f.Metric[0].Label {
			got = append(got, l.GetName())
			if l.GetName() == "domain" && l.GetValue() != "web" {
				t.Errorf("%s: domain %q, want web", name, l.GetValue())
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			t.Errorf("%s: labels %v, want %v", name, got, labels)
		}
	}
	// Nothing else is named libvirt_: a series of vmstated's own meaning
	// under a libvirt name would mislead a dashboard.
	for name := range fams {
		if strings.HasPrefix(name, "libvirt_") && want[name] == nil {
			t.Errorf("%s: served under a libvirt name without a libvirt meaning", name)
		}
	}
	if f := fams["libvirt_domain_memory_stats_rss_bytes"]; f != nil && len(f.Metric) == 1 {
		if v := f.Metric[0].GetGauge().GetValue(); v < 1<<20 {
			t.Errorf("this process's resident memory: %v bytes", v)
		}
	}
}
