package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// The daemon's own series move: an event reader that does not read is cut
// off and counted; VMs whose config did not load are counted, for each
// scraper among the VMs it may see.
func TestDaemonSeries(t *testing.T) {
	src := &fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, src)
	now := time.Now()
	src.set(supervisor.Status{Name: "good", State: statemachine.Stopped, Desired: statemachine.Stopped, Since: now})
	src.set(supervisor.Status{Name: "bad", State: statemachine.Stopped, Desired: statemachine.Stopped, Since: now,
		ConfigError: "config:3:5: unknown key"})

	text := scrapeOf(t, m, nil, true)
	for _, want := range []string{
		"vmstated_event_readers_cut_off_total 0",
		"vmstated_config_errors 1",
		`vmstated_vm_config_error{vm="bad"} 1`,
		`vmstated_vm_config_error{vm="good"} 0`,
		"vmstated_vms 2",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	onlyGood := func(st supervisor.Status) bool { return st.Name == "good" }
	if text := scrapeOf(t, m, onlyGood, false); !strings.Contains(text, "vmstated_config_errors 0\n") || strings.Contains(text, `"bad"`) {
		t.Errorf("a scraper who sees only good:\n%s", text)
	}

	// A reader that never reads, and more events than its buffer holds.
	stuck := src.bus.Subscribe(src.bus.Seq())
	defer stuck.Close()
	for i := 0; i < 3000; i++ {
		src.bus.Publish(supervisor.Event{Time: now, Kind: supervisor.KindTransition, VM: "good", From: statemachine.Stopped, To: statemachine.Stopped})
	}
	settle(t, m, src, "marker")
	text = scrapeOf(t, m, nil, true)
	if strings.Contains(text, "vmstated_event_readers_cut_off_total 0\n") || !strings.Contains(text, "vmstated_event_readers_cut_off_total ") {
		t.Errorf("a reader cut off is not counted:\n%s", grepLines(text, "cut_off"))
	}
	if got := src.bus.CutOffs(); got < 1 {
		t.Errorf("the bus counted %d cut-offs", got)
	}
}

func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}
