// Package drivertest is the conformance suite every hypervisor driver
// passes. A driver's tests call Run with a Harness that knows how to build
// Specs for two kinds of VM: one that powers off when asked, and one that
// ignores the request so that only Kill ends it.
//
// A driver's test looks like this:
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Harness{
//			NewDriver: func() hypervisor.Driver { return mydriver.New() },
//			Spec: func(t *testing.T, kind drivertest.Kind) hypervisor.Spec {
//				if kind == drivertest.Stubborn {
//					return hypervisor.Spec{Name: "t", Options: ignoresShutdown}
//				}
//				return hypervisor.Spec{Name: "t", Options: powersOff}
//			},
//			OutputMarker: "guest up",
//			Timeout:      5 * time.Minute,
//		})
//	}
//
// Each case starts its own VM in a fresh RunDir and kills whatever it
// started when it ends, pass or fail.
package drivertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// Kind selects the VM a Harness builds.
type Kind int

const (
	// Graceful is a VM that powers off (ExitPoweroff) once Shutdown is
	// called.
	Graceful Kind = iota
	// Stubborn is a VM that ignores Shutdown; only Kill ends it.
	Stubborn
)

func (k Kind) String() string {
	if k == Graceful {
		return "graceful"
	}
	return "stubborn"
}

// Harness tells the suite how to run one driver.
type Harness struct {
	// NewDriver returns a driver value. The suite recovers instances with
	// a value other than the one that started them, as a restarted daemon
	// would.
	NewDriver func() hypervisor.Driver
	// Spec returns the Spec of a VM of the given kind. The suite sets
	// RunDir (a fresh temporary directory) and Output.
	Spec func(t *testing.T, kind Kind) hypervisor.Spec
	// OutputMarker is text the VM writes to its output soon after it
	// starts (both kinds). Once it has appeared the VM must react to
	// Shutdown as its kind says.
	OutputMarker string
	// ShutdownMarker, if not empty, is text a Graceful VM writes to its
	// output as it powers off. The suite checks that it has reached
	// Spec.Output by the time Done is closed: drivers drain the output
	// before they report the exit.
	ShutdownMarker string
	// Ready, if not nil, replaces waiting for OutputMarker before the
	// suite calls Shutdown (e.g. to wait until a guest OS has booted).
	Ready func(ctx context.Context, inst hypervisor.Instance, output *Output) error
	// Timeout bounds each wait; it only catches hangs. Zero means 60s;
	// raise it for slow drivers.
	Timeout time.Duration
	// Parallel runs the cases in parallel (t.Parallel), for drivers whose
	// VMs take long to start.
	Parallel bool
	// Skip names cases (as in Cases) that do not apply to the driver,
	// each with the reason given to t.Skip.
	Skip map[string]string
}

// Cases lists the names of the suite's cases, in the order they run.
func Cases() []string {
	var names []string
	for _, c := range (&suite{}).cases() {
		names = append(names, c.name)
	}
	return names
}

type testCase struct {
	name string
	fn   func(t *testing.T)
}

func (s *suite) cases() []testCase {
	return []testCase{
		{"StartOutputShutdown", s.startOutputShutdown},
		{"DoubleShutdown", s.doubleShutdown},
		{"ForceKill", s.forceKill},
		{"DoubleKill", s.doubleKill},
		{"KillExited", s.killExited},
		{"ConcurrentWaiters", s.concurrentWaiters},
		{"RecoverLive", s.recoverLive},
		{"RecoverDead", s.recoverDead},
		{"RecoverReusedPID", s.recoverReusedPID},
		{"CancelStartContext", s.cancelStartContext},
		{"StartCancelledContext", s.startCancelledContext},
	}
}

// Output collects what an instance writes to Spec.Output; safe for
// concurrent use. The zero value is ready to use.
type Output struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	change chan struct{}
}

func newOutput() *Output { return &Output{} }

// changed returns the channel that is signalled after each Write.
func (o *Output) changed() chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.change == nil {
		o.change = make(chan struct{}, 1)
	}
	return o.change
}

// Write appends to the collected output.
func (o *Output) Write(b []byte) (int, error) {
	o.mu.Lock()
	o.buf.Write(b)
	o.mu.Unlock()
	select {
	case o.changed() <- struct{}{}:
	default:
	}
	return len(b), nil
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// WaitFor waits until the output contains s.
func (o *Output) WaitFor(ctx context.Context, s string) error {
	for {
		if strings.Contains(o.String(), s) {
			return nil
		}
		select {
		case <-o.changed():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type suite struct {
	h Harness
}

// Run runs the conformance suite as subtests of t.
//
// Shutdown of an instance that has already exited must return nil or an
// error wrapping hypervisor.ErrExited; Kill of one must return nil.
func Run(t *testing.T, h Harness) {
	if h.NewDriver == nil || h.Spec == nil {
		t.Fatal("drivertest: Harness needs NewDriver and Spec")
	}
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	s := &suite{h: h}
	known := map[string]bool{}
	for _, c := range s.cases() {
		known[c.name] = true
	}
	for name := range h.Skip {
		if !known[name] {
			t.Errorf("drivertest: Harness.Skip names %q, which is not a case (see Cases)", name)
		}
	}
	for _, c := range s.cases() {
		t.Run(c.name, func(t *testing.T) {
			if reason, ok := h.Skip[c.name]; ok {
				t.Skip(reason)
			}
			if h.Parallel {
				t.Parallel()
			}
			c.fn(t)
		})
	}
}

// vm is one started instance with its spec and output.
type vm struct {
	spec hypervisor.Spec
	out  *Output
	inst hypervisor.Instance
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) spec(t *testing.T, kind Kind) (hypervisor.Spec, *Output) {
	spec := s.h.Spec(t, kind)
	spec.RunDir = filepath.Join(t.TempDir(), "run")
	out := newOutput()
	spec.Output = out
	return spec, out
}

// start starts a VM of the given kind and makes sure it dies with the
// test.
func (s *suite) start(t *testing.T, kind Kind) *vm {
	t.Helper()
	spec, out := s.spec(t, kind)
	inst, err := s.h.NewDriver().Start(s.ctx(t), spec)
	if err != nil {
		t.Fatalf("Start %s VM: %v", kind, err)
	}
	s.cleanup(t, inst)
	return &vm{spec: spec, out: out, inst: inst}
}

func (s *suite) cleanup(t *testing.T, inst hypervisor.Instance) {
	t.Cleanup(func() {
		_ = inst.Kill()
		select {
		case <-inst.Done():
		case <-time.After(s.h.Timeout):
			t.Errorf("instance pid %d did not end after Kill", inst.Handle().PID)
		}
	})
}

// ready waits until the VM reacts to Shutdown.
func (s *suite) ready(t *testing.T, v *vm) {
	t.Helper()
	ctx := s.ctx(t)
	var err error
	if s.h.Ready != nil {
		err = s.h.Ready(ctx, v.inst, v.out)
	} else {
		err = v.out.WaitFor(ctx, s.h.OutputMarker)
	}
	if err != nil {
		t.Fatalf("VM not ready: %v; output so far: %q", err, v.out.String())
	}
}

// wait waits for the instance to exit and returns the exit.
func (s *suite) wait(t *testing.T, inst hypervisor.Instance) hypervisor.Exit {
	t.Helper()
	select {
	case <-inst.Done():
	case <-time.After(s.h.Timeout):
		t.Fatalf("instance pid %d did not exit within %v", inst.Handle().PID, s.h.Timeout)
	}
	e, ok := inst.Exit()
	if !ok {
		t.Fatal("Exit not final after Done was closed")
	}
	if e.Time.IsZero() {
		t.Error("Exit.Time is zero")
	}
	if e.StatusUnknown && e.Code != -1 {
		t.Errorf("exit %+v: an unknown status with a code", e)
	}
	s.checkOver(t, inst.Handle())
	return e
}

// checkOver checks that nothing of a VM runs once Done is closed: not its
// process, nor any process of the group or cgroup its handle names.
func (s *suite) checkOver(t *testing.T, h hypervisor.Handle) {
	t.Helper()
	if process.Running(h.PID, h.StartTime) {
		t.Errorf("pid %d still runs once Done is closed", h.PID)
	}
	if h.PGID == 0 && h.Cgroup == "" {
		return
	}
	g := process.Group{PGID: h.PGID, LeaderStart: h.StartTime, Cgroup: h.Cgroup}
	if pids, err := g.Members(); err != nil || len(pids) > 0 {
		t.Errorf("processes %v of the VM's group %d / cgroup %q still run once Done is closed (%v)", pids, h.PGID, h.Cgroup, err)
	}
	if h.Cgroup != "" {
		if _, err := os.Stat(h.Cgroup); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the VM's cgroup %s is still there once Done is closed (%v)", h.Cgroup, err)
		}
	}
}

func wantReason(t *testing.T, e hypervisor.Exit, want hypervisor.ExitReason) {
	t.Helper()
	if e.Reason != want {
		t.Errorf("exit = %+v, want reason %s", e, want)
	}
}

func okExited(err error) bool { return err == nil || errors.Is(err, hypervisor.ErrExited) }

func (s *suite) startOutputShutdown(t *testing.T) {
	v := s.start(t, Graceful)
	h := v.inst.Handle()
	if h.Version != hypervisor.HandleVersion || h.PID <= 0 || h.StartTime == 0 || h.RunDir != v.spec.RunDir {
		t.Errorf("handle = %+v", h)
	}
	if h.Driver != s.h.NewDriver().Name() {
		t.Errorf("handle driver %q, driver name %q", h.Driver, s.h.NewDriver().Name())
	}
	if _, ok := v.inst.Exit(); ok {
		t.Error("Exit is final while the VM runs")
	}
	s.ready(t, v)
	if err := v.out.WaitFor(s.ctx(t), s.h.OutputMarker); err != nil {
		t.Fatalf("Output never got %q: %q", s.h.OutputMarker, v.out.String())
	}
	select {
	case <-v.inst.Done():
		t.Fatal("Done closed while the VM runs")
	default:
	}
	if err := v.inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantReason(t, s.wait(t, v.inst), hypervisor.ExitPoweroff)
	if m := s.h.ShutdownMarker; m != "" && !strings.Contains(v.out.String(), m) {
		t.Errorf("Output lacks %q once Done is closed: %q", m, v.out.String())
	}
}

func (s *suite) doubleShutdown(t *testing.T) {
	v := s.start(t, Graceful)
	s.ready(t, v)
	if err := v.inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := v.inst.Shutdown(s.ctx(t)); !okExited(err) {
		t.Errorf("second Shutdown: %v", err)
	}
	wantReason(t, s.wait(t, v.inst), hypervisor.ExitPoweroff)
	if err := v.inst.Shutdown(s.ctx(t)); !okExited(err) {
		t.Errorf("Shutdown after exit: %v, want nil or ErrExited", err)
	}
}

func (s *suite) forceKill(t *testing.T) {
	v := s.start(t, Stubborn)
	s.ready(t, v)
	if err := v.inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-v.inst.Done():
		t.Fatalf("stubborn VM exited on Shutdown: %+v", must(v.inst.Exit()))
	default:
	}
	if err := v.inst.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	wantReason(t, s.wait(t, v.inst), hypervisor.ExitKilled)
	if err := v.inst.Shutdown(s.ctx(t)); !okExited(err) {
		t.Errorf("Shutdown after exit: %v, want nil or ErrExited", err)
	}
}

func must(e hypervisor.Exit, _ bool) hypervisor.Exit { return e }

func (s *suite) doubleKill(t *testing.T) {
	v := s.start(t, Stubborn)
	if err := v.inst.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := v.inst.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	wantReason(t, s.wait(t, v.inst), hypervisor.ExitKilled)
}

func (s *suite) killExited(t *testing.T) {
	v := s.start(t, Graceful)
	s.ready(t, v)
	if err := v.inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	want := s.wait(t, v.inst)
	if err := v.inst.Kill(); err != nil {
		t.Errorf("Kill after exit: %v", err)
	}
	if got, _ := v.inst.Exit(); got != want {
		t.Errorf("Kill after exit changed Exit from %+v to %+v", want, got)
	}
}

func (s *suite) concurrentWaiters(t *testing.T) {
	v := s.start(t, Graceful)
	const n = 50
	exits := make(chan hypervisor.Exit, n)
	for i := 0; i < n; i++ {
		go func() {
			<-v.inst.Done()
			e, _ := v.inst.Exit()
			exits <- e
		}()
	}
	s.ready(t, v)
	if err := v.inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	want := s.wait(t, v.inst)
	for i := 0; i < n; i++ {
		select {
		case e := <-exits:
			if e != want {
				t.Fatalf("waiter saw %+v, want %+v", e, want)
			}
		case <-time.After(s.h.Timeout):
			t.Fatalf("only %d of %d waiters woke", i, n)
		}
	}
}

// roundTrip passes a handle through JSON, as the daemon persists it.
func roundTrip(t *testing.T, h hypervisor.Handle) hypervisor.Handle {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var out hypervisor.Handle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *suite) recoverLive(t *testing.T) {
	v := s.start(t, Graceful)
	s.ready(t, v)
	h := roundTrip(t, v.inst.Handle())
	spec := v.spec
	out := newOutput()
	spec.Output = out
	rec, err := s.h.NewDriver().Recover(s.ctx(t), spec, h)
	if err != nil {
		t.Fatalf("Recover a live instance: %v", err)
	}
	s.cleanup(t, rec)
	if got := rec.Handle(); got.PID != h.PID || got.StartTime != h.StartTime || got.Driver != h.Driver {
		t.Errorf("recovered handle %+v, want pid %d start %d", got, h.PID, h.StartTime)
	}
	if _, ok := rec.Exit(); ok {
		t.Error("recovered instance reports an exit while the VM runs")
	}
	if err := rec.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown through the recovered instance: %v", err)
	}
	wantReason(t, s.wait(t, rec), hypervisor.ExitPoweroff)
	s.wait(t, v.inst) // the first instance sees the exit too
}

func (s *suite) recoverDead(t *testing.T) {
	v := s.start(t, Stubborn)
	h := v.inst.Handle()
	if err := v.inst.Kill(); err != nil {
		t.Fatal(err)
	}
	s.wait(t, v.inst)
	inst, err := s.h.NewDriver().Recover(s.ctx(t), v.spec, h)
	if err == nil {
		s.cleanup(t, inst)
	}
	if !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Recover of an exited instance: err = %v, want ErrGone", err)
	}
}

func (s *suite) recoverReusedPID(t *testing.T) {
	v := s.start(t, Stubborn)
	h := v.inst.Handle()
	h.StartTime++ // as if the pid now named another process
	inst, err := s.h.NewDriver().Recover(s.ctx(t), v.spec, h)
	if err == nil {
		s.cleanup(t, inst)
	}
	if !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Recover with a wrong start time: err = %v, want ErrGone", err)
	}
	select {
	case <-v.inst.Done():
		t.Error("the VM exited after a failed Recover")
	default:
	}
}

func (s *suite) cancelStartContext(t *testing.T) {
	spec, out := s.spec(t, Graceful)
	ctx, cancel := context.WithCancel(context.Background())
	inst, err := s.h.NewDriver().Start(ctx, spec)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	s.cleanup(t, inst)
	cancel()
	v := &vm{spec: spec, out: out, inst: inst}
	s.ready(t, v)
	// Still alive: a fresh driver can adopt it, and it powers off
	// (rather than being killed) when asked.
	rec, err := s.h.NewDriver().Recover(s.ctx(t), spec, inst.Handle())
	if err != nil {
		t.Fatalf("instance gone after its Start context was cancelled: %v", err)
	}
	s.cleanup(t, rec)
	if err := inst.Shutdown(s.ctx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantReason(t, s.wait(t, inst), hypervisor.ExitPoweroff)
	s.wait(t, rec)
}

func (s *suite) startCancelledContext(t *testing.T) {
	spec, _ := s.spec(t, Graceful)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	inst, err := s.h.NewDriver().Start(ctx, spec)
	if err == nil {
		s.cleanup(t, inst)
		t.Fatal("Start with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context: err = %v, want context.Canceled", err)
	}
}
