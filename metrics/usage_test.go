package metrics

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// hungSource has two running VMs: "hung", whose hypervisor never answers
// (its Usage waits for the end of its context), listed first, and "ok".
type hungSource struct{ *fakeSource }

func (h hungSource) List() []supervisor.Status {
	return []supervisor.Status{h.vms["hung"], h.vms["ok"]}
}

func (h hungSource) Usage(ctx context.Context, name string) (supervisor.Usage, error) {
	if name == "hung" {
		<-ctx.Done()
		return supervisor.Usage{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return supervisor.Usage{}, err
	}
	return supervisor.Usage{Block: []hypervisor.BlockStat{{Device: "disk0", ReadBytes: 4096}}}, nil
}

// A hypervisor that does not answer costs the scrape its own bound, not
// the whole scrape's: the VMs after it still have their block counters,
// and it keeps its other series.
func TestUsageOfAHungHypervisorIsBounded(t *testing.T) {
	src := hungSource{&fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, src)
	for _, name := range []string{"hung", "ok"} {
		src.set(supervisor.Status{Name: name, State: statemachine.Running, Desired: statemachine.Running,
			Since: time.Now(), PID: os.Getpid()})
	}
	text := scrapeOf(t, m, nil, true)
	if !strings.Contains(text, `libvirt_domain_block_stats_read_bytes_total{domain="ok",target_device="disk0"} 4096`) {
		t.Errorf("the VM after a hung hypervisor lost its block counters:\n%s", text)
	}
	if strings.Contains(text, `libvirt_domain_block_stats_read_bytes_total{domain="hung"`) {
		t.Errorf("block counters for a hypervisor that never answered")
	}
	if !strings.Contains(text, `vmstated_vm_state{state="running",vm="hung"} 1`) {
		t.Errorf("the hung VM lost its state series")
	}
}
