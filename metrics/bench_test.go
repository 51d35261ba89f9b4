package metrics

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// thousandVMs is a source of 1,000 VMs, each with a history of events.
func thousandVMs(b *testing.B) (*Metrics, *fakeSource, context.CancelFunc) {
	src := &fakeSource{bus: supervisor.NewBus(), vms: map[string]supervisor.Status{}}
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, src)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("vm%04d", i)
		src.set(supervisor.Status{Name: name, State: statemachine.Running, Desired: statemachine.Running, Since: now,
			CPUs: 2, MemoryMB: 1024, MaxRestart: 3, LastExit: &hypervisor.Exit{Reason: hypervisor.ExitCrash, Time: now}})
		for _, st := range []statemachine.State{statemachine.StartNetwork, statemachine.StartStorage} {
			src.bus.Publish(supervisor.Event{Time: now, Kind: supervisor.KindTransition, VM: name, To: st})
			src.bus.Publish(supervisor.Event{Time: now.Add(20 * time.Millisecond), Kind: supervisor.KindHook, VM: name, To: st})
		}
		src.bus.Publish(supervisor.Event{Time: now, Kind: supervisor.KindTransition, VM: name, Event: statemachine.AutoRestart, From: statemachine.Running, To: statemachine.Restarting})
	}
	deadline := time.Now().Add(time.Minute)
	for {
		m.mu.Lock()
		n := len(m.vms)
		m.mu.Unlock()
		if n == 1000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return m, src, cancel
}

// BenchmarkScrape1000 is one scrape of 1,000 VMs (no hypervisor
// processes: the process, block and tap reads are per running VM on top).
func BenchmarkScrape1000(b *testing.B) {
	m, _, cancel := thousandVMs(b)
	defer cancel()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		text := scrapeOf(&testing.T{}, m, nil, true)
		if i == 0 {
			b.ReportMetric(float64(len(text)), "bytes/scrape")
		}
	}
}

// BenchmarkIdle1000 measures the process's CPU time while 1,000 VMs are
// followed and nothing happens or scrapes: it should stay at zero.
func BenchmarkIdle1000(b *testing.B) {
	_, _, cancel := thousandVMs(b)
	defer cancel()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	start := cpu()
	// One sleep: the benchmark's own wake-ups stay out of the figure.
	idle := time.Duration(b.N) * 10 * time.Millisecond
	time.Sleep(idle)
	b.ReportMetric(float64(cpu()-start)/float64(idle)*100, "%cpu-idle")
}
