// Package metrics exposes the daemon and its VMs in the Prometheus text
// format.
//
// Nothing here polls. Counters (restarts, failures, exits, hook runs and
// their durations, re-adoptions) are kept from the supervisor's event bus
// by one goroutine; gauges (state, desired state, restarts in the window)
// are read from the supervisor's status snapshots when a scrape comes; the
// hypervisor process's CPU time and memory, its block counters (QMP
// query-blockstats) and its tap devices' counters are read then too,
// straight from the process and the instance, never through a VM's actor.
// With nobody scraping, the cost is that goroutine reading events.
//
// Series whose meaning is the same as in the libvirt exporters carry their
// names and labels (libvirt_domain_info_*, libvirt_domain_memory_stats_rss_bytes,
// libvirt_domain_block_stats_*, libvirt_domain_interface_stats_*, label
// domain), so existing dashboards work; the rest are vmstated_* with label
// vm.
package metrics

import (
	"context"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// Source is what the metrics read: the supervisor.
type Source interface {
	List() []supervisor.Status
	Get(name string) (supervisor.Status, error)
	Bus() *supervisor.Bus
	Usage(ctx context.Context, name string) (supervisor.Usage, error)
}

// HookBuckets are the upper bounds of the hook duration histogram, in
// seconds.
var HookBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300}

// usageTimeout bounds what one scrape spends asking hypervisors, and
// perVMTimeout what it spends on one.
const (
	usageTimeout = 5 * time.Second
	perVMTimeout = time.Second
)

// Metrics keeps the event-driven counters and answers scrapes.
type Metrics struct {
	src     Source
	started time.Time

	mu       sync.Mutex
	vms      map[string]*vmCounters
	requests map[int]uint64
	done     chan struct{}
}

// vmCounters are one VM's counters since the daemon started.
type vmCounters struct {
	restarts    uint64
	failures    uint64
	readoptions uint64
	exits       map[string]uint64 // by exit reason
	hooks       map[statemachine.State]*hookCounters
	// entered is when the VM entered its current state: a hook's
	// duration runs from there to its hook event.
	entered      time.Time
	enteredState statemachine.State
	lastExit     time.Time
}

type hookCounters struct {
	runs, failures, timeouts uint64
	sum                      float64
	buckets                  []uint64 // per HookBuckets, not cumulative
	beyond                   uint64   // timed runs longer than the last bucket
}

// New starts following src's events; ctx ends that. Call it before the
// supervisor loads its VMs so that the counters see their first events.
func New(ctx context.Context, src Source) *Metrics {
	m := &Metrics{
		src:      src,
		started:  time.Now(),
		vms:      make(map[string]*vmCounters),
		requests: make(map[int]uint64),
		done:     make(chan struct{}),
	}
	sub := src.Bus().SubscribeReplay(0)
	go m.follow(ctx, sub)
	return m
}

// Done is closed when the metrics stopped following events.
func (m *Metrics) Done() <-chan struct{} { return m.done }

// follow keeps the counters from the bus, resuming where it was cut off
// should it ever read too slowly.
func (m *Metrics) follow(ctx context.Context, sub *supervisor.Subscription) {
	defer close(m.done)
	var last uint64
	for {
		select {
		case <-ctx.Done():
			sub.Close()
			return
		case e, ok := <-sub.C():
			if !ok {
				if ctx.Err() != nil {
					return
				}
				sub = m.src.Bus().SubscribeReplay(last)
				continue
			}
			if e.Kind != supervisor.KindLost {
				last = e.Seq
			}
			m.observe(e)
		}
	}
}

func (m *Metrics) counters(vm string) *vmCounters {
	c := m.vms[vm]
	if c == nil {
		c = &vmCounters{exits: map[string]uint64{}, hooks: map[statemachine.State]*hookCounters{}}
		m.vms[vm] = c
	}
	return c
}

// observe updates the counters from one event.
func (m *Metrics) observe(e supervisor.Event) {
	if e.VM == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.Kind {
	case supervisor.KindConfig:
		if e.Reason == "dropped" {
			delete(m.vms, e.VM)
		}
	case supervisor.KindTransition:
		c := m.counters(e.VM)
		c.entered, c.enteredState = e.Time, e.To
		switch {
		case e.To == statemachine.Restarting && e.Event == statemachine.AutoRestart:
			c.restarts++
		case e.To == statemachine.Failed:
			c.failures++
		}
		if e.Event == statemachine.Exited || e.Event == statemachine.AutoRestart || e.From.HypervisorUp() && !e.To.HypervisorUp() {
			m.countExit(c, e.VM)
		}
	case supervisor.KindAdopted:
		m.counters(e.VM).readoptions++
	case supervisor.KindHook:
		if e.Skipped {
			return
		}
		c := m.counters(e.VM)
		h := c.hooks[e.To]
		if h == nil {
			h = &hookCounters{buckets: make([]uint64, len(HookBuckets))}
			c.hooks[e.To] = h
		}
		h.runs++
		if e.Reason != "" {
			h.failures++
			if strings.Contains(e.Reason, " timed out") {
				h.timeouts++
			}
		}
		if c.enteredState == e.To && !c.entered.IsZero() {
			d := e.Time.Sub(c.entered).Seconds()
			h.sum += d
			i := sort.SearchFloat64s(HookBuckets, d)
			if i < len(HookBuckets) {
				h.buckets[i]++
			} else {
				h.beyond++
			}
		}
	}
}

// countExit counts the VM's last exit by its reason, once: the status
// holds the exit before the transition it causes is published. Exits from
// before this daemon started are not counted.
func (m *Metrics) countExit(c *vmCounters, vm string) {
	st, err := m.src.Get(vm)
	if err != nil || st.LastExit == nil {
		return
	}
	x := st.LastExit
	if x.Time.Before(m.started) || !x.Time.After(c.lastExit) {
		return
	}
	c.lastExit = x.Time
	c.exits[string(x.Reason)]++
}

// ObserveRequest counts one API request by its HTTP status.
func (m *Metrics) ObserveRequest(code int) {
	m.mu.Lock()
	m.requests[code]++
	m.mu.Unlock()
}

// Handler serves one scrape: the VMs visible accepts (all when nil) and,
// when admin, the daemon's own series beyond up and build info.
func (m *Metrics) Handler(visible func(supervisor.Status) bool, admin bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&view{m: m, ctx: r.Context(), visible: visible, admin: admin})
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
	})
}

// buildInfo is the daemon's version, from the binary's build information.
func buildInfo() (version, revision, goVersion string) {
	version, revision = "unknown", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, revision, "unknown"
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision, bi.GoVersion
}
