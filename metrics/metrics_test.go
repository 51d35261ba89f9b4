package metrics

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// fakeSource is a supervisor's status and a real bus.
type fakeSource struct {
	bus *supervisor.Bus
	mu  sync.Mutex
	vms map[string]supervisor.Status
}

func (f *fakeSource) List() []supervisor.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []supervisor.Status
	for _, st := range f.vms {
		out = append(out, st)
	}
	return out
}

func (f *fakeSource) Get(name string) (supervisor.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.vms[name]
	if !ok {
		return st, supervisor.ErrUnknownVM
	}
	return st, nil
}

func (f *fakeSource) Bus() *supervisor.Bus { return f.bus }

func (f *fakeSource) Usage(context.Context, string) (supervisor.Usage, error) {
	return supervisor.Usage{}, nil
}

func (f *fakeSource) set(st supervisor.Status) {
	f.mu.Lock()
	f.vms[st.Name] = st
	f.mu.Unlock()
}

// settle waits until the metrics have read every event published.
func settle(t *testing.T, m *Metrics, src *fakeSource, marker string) {
	t.Helper()
	src.bus.Publish(supervisor.Event{Kind: supervisor.KindTransition, VM: marker, From: statemachine.Stopped, To: statemachine.Stopped})
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		_, ok := m.vms[marker]
		m.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the metrics did not read the events")
		}
		time.Sleep(time.Millisecond)
	}
}

func scrapeOf(t *testing.T, m *Metrics, visible func(supervisor.Status) bool, admin bool) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(visible, admin).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestCountersFromEvents(t *testing.T) {
	src := &fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, src)

	now := time.Now()
	src.set(supervisor.Status{Name: "web", State: statemachine.Running, Desired: statemachine.Running, Since: now, MaxRestart: 3})
	pub := func(e supervisor.Event) { src.bus.Publish(e) }
	at := func(d time.Duration) time.Time { return now.Add(d) }
	pub(supervisor.Event{Time: at(0), Kind: supervisor.KindTransition, VM: "web", Event: statemachine.Start, From: statemachine.Stopped, To: statemachine.StartNetwork})
	pub(supervisor.Event{Time: at(30 * time.Millisecond), Kind: supervisor.KindHook, VM: "web", To: statemachine.StartNetwork})
	pub(supervisor.Event{Time: at(30 * time.Millisecond), Kind: supervisor.KindTransition, VM: "web", Event: statemachine.Done, From: statemachine.StartNetwork, To: statemachine.StartStorage})
	pub(supervisor.Event{Time: at(2 * time.Second), Kind: supervisor.KindHook, VM: "web", To: statemachine.StartStorage, Reason: "hook start_storage timed out after 1s"})
	pub(supervisor.Event{Time: at(3 * time.Second), Kind: supervisor.KindHook, VM: "web", To: statemachine.Running, Skipped: true})
	// An exit: the status shows it before the transition is published.
	src.set(supervisor.Status{Name: "web", State: statemachine.Restarting, Desired: statemachine.Running, Since: now,
		LastExit: &hypervisor.Exit{Reason: hypervisor.ExitCrash, Time: at(4 * time.Second)}})
	pub(supervisor.Event{Time: at(4 * time.Second), Kind: supervisor.KindTransition, VM: "web", Event: statemachine.AutoRestart, From: statemachine.Running, To: statemachine.Restarting})
	pub(supervisor.Event{Time: at(5 * time.Second), Kind: supervisor.KindAdopted, VM: "web", Reason: "re-adopted exec pid 4242 after a daemon restart"})
	pub(supervisor.Event{Time: at(5 * time.Second), Kind: supervisor.KindTransition, VM: "web", Event: statemachine.Done, From: statemachine.Restarting, To: statemachine.Restarted, Reason: "re-adopted after a daemon restart"})
	settle(t, m, src, "marker")

	text := scrapeOf(t, m, nil, true)
	for _, want := range []string{
		`vmstated_vm_hook_runs_total{state="start_network",vm="web"} 1`,
		`vmstated_vm_hook_runs_total{state="start_storage",vm="web"} 1`,
		`vmstated_vm_hook_timeouts_total{state="start_storage",vm="web"} 1`,
		`vmstated_vm_hook_failures_total{state="start_storage",vm="web"} 1`,
		`vmstated_vm_hook_failures_total{state="start_network",vm="web"} 0`,
		`vmstated_vm_hook_duration_seconds_bucket{state="start_network",vm="web",le="0.01"} 0`,
		`vmstated_vm_hook_duration_seconds_bucket{state="start_network",vm="web",le="0.05"} 1`,
		`vmstated_vm_hook_duration_seconds_bucket{state="start_storage",vm="web",le="1"} 0`,
		`vmstated_vm_hook_duration_seconds_bucket{state="start_storage",vm="web",le="5"} 1`,
		`vmstated_vm_exits_total{reason="crash",vm="web"} 1`,
		`vmstated_vm_restarts_total{vm="web"} 1`,
		`vmstated_vm_readoptions_total{vm="web"} 1`,
		`vmstated_vm_state{state="restarting",vm="web"} 1`,
		`vmstated_vm_state{state="running",vm="web"} 0`,
		`vmstated_vm_desired_state{state="running",vm="web"} 1`,
		`vmstated_event_readers_cut_off_total 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(text, `state="running",vm="web"} 1`) && strings.Contains(text, "hook_runs_total{state=\"running\"") {
		t.Errorf("a skipped hook counted as a run")
	}

	// Not visible: no series of it, and no daemon counters for others.
	text = scrapeOf(t, m, func(supervisor.Status) bool { return false }, false)
	if strings.Contains(text, `vm="web"`) || strings.Contains(text, "vmstated_event_readers_cut_off_total") {
		t.Errorf("a scraper who may see nothing sees:\n%s", text)
	}

	// A dropped VM loses its counters.
	pub(supervisor.Event{Kind: supervisor.KindConfig, VM: "web", Reason: "dropped"})
	settle(t, m, src, "marker2")
	m.mu.Lock()
	_, kept := m.vms["web"]
	m.mu.Unlock()
	if kept {
		t.Error("a dropped VM's counters are kept")
	}
	cancel()
	<-m.Done()
}

// A scrape while events pour in neither races nor blocks the publisher.
func TestScrapeDuringEvents(t *testing.T) {
	src := &fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(ctx, src)
	src.set(supervisor.Status{Name: "a", State: statemachine.Stopped})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 3000; i++ { // fewer than the bus keeps
			src.bus.Publish(supervisor.Event{Kind: supervisor.KindTransition, VM: "a", Event: statemachine.AutoRestart, From: statemachine.Running, To: statemachine.Restarting})
		}
	}()
	for i := 0; i < 20; i++ {
		scrapeOf(t, m, nil, true)
	}
	<-done
	settle(t, m, src, "marker")
	m.mu.Lock()
	got := m.vms["a"].restarts
	m.mu.Unlock()
	// A reader cut off for being slow resumes after its last event, so
	// none is lost while the bus still keeps them.
	if got != 3000 {
		t.Errorf("counted %d restarts of 3000", got)
	}
}

// The example alert rules name only series this package serves.
func TestExampleRulesUseServedSeries(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "examples", "prometheus", "vmstated.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("collect.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\b(vmstated|libvirt)_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) < 4 {
		t.Fatalf("found only %v in the rules", names)
	}
	for _, n := range names {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if !strings.Contains(string(src), `"`+base+`"`) {
			t.Errorf("vmstated.rules.yml uses %s, which the metrics do not serve", n)
		}
	}
}
