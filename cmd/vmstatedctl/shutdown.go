package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vmstated/vmstated/api"
)

// The host-shutdown command lives in the client on purpose: it needs
// nothing the API lacks (list, stop, stop -f, events), so it works against
// any daemon through its socket alone, and the deadline is held by the one
// process the service manager waits for. The daemon carries out each stop
// as it always does and writes it to each VM's log.

// defaultShutdownTimeout is the overall deadline of 'vmstatedctl shutdown'.
const defaultShutdownTimeout = 300 * time.Second

// forceGrace bounds what follows the deadline: forcing the VMs that are
// left and waiting for them to finish tearing down. The whole command ends
// within the deadline plus this.
const forceGrace = 10 * time.Second

// Outcomes of one VM in a host shutdown.
const (
	endPoweredOff     = "powered off"
	endForcedDeadline = "forced at the deadline"
	endForcedTimeout  = "forced after its stop_timeout"
	endStopped        = "stopped"
	endSuspended      = "suspended"
	endAlreadyStopped = "already stopped"
	endAlreadySusp    = "already suspended"
	endAlreadyFailed  = "already failed"
	endFailed         = "failed"
	endNotStopped     = "not stopped"
)

// endOrder is the order of the outcomes in the report's totals.
var endOrder = []string{
	endPoweredOff, endStopped, endSuspended, endForcedTimeout, endForcedDeadline,
	endAlreadyStopped, endAlreadySusp, endAlreadyFailed, endFailed, endNotStopped,
}

// shutdownVM is what happened to one VM.
type shutdownVM struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	// Seconds is how long the VM took from its stop request until it
	// rested; 0 for one that was already at rest.
	Seconds float64   `json:"seconds"`
	State   api.State `json:"state"`
	Exit    *api.Exit `json:"exit,omitempty"`
	// Forced is true when the command forced the stop at the deadline.
	Forced bool   `json:"forced,omitempty"`
	Error  string `json:"error,omitempty"`
}

// shutdownReport is the JSON output of 'vmstatedctl shutdown'.
type shutdownReport struct {
	Timeout float64      `json:"timeout"`
	Seconds float64      `json:"seconds"`
	VMs     []shutdownVM `json:"vms"`
}

func cmdShutdown(e *env, args []string) error {
	fs := e.newFlags("shutdown")
	timeout := fs.Float64("t", defaultShutdownTimeout.Seconds(), "deadline in seconds")
	if _, err := e.parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("-t %v: want a number of seconds above 0", *timeout)
	}
	rep, err := e.shutdown(time.Duration(*timeout * float64(time.Second)))
	if err != nil && rep.VMs == nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, rep)
	} else {
		printShutdown(e, rep)
	}
	if err != nil {
		return err // interrupted: the report shows how far it got
	}
	var bad []string
	for _, r := range rep.VMs {
		if r.Result == endFailed || r.Result == endNotStopped {
			bad = append(bad, r.Name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not every VM stopped: %s; see 'vmstatedctl status' and 'vmstatedctl log vmname'", strings.Join(bad, ", "))
	}
	return nil
}

// shutdown stops every VM the caller sees: all at once, except that a VM
// is asked only once every VM that depends on it has stopped. Each stops
// its own way (its driver's graceful stop, its stop_timeout); whatever is
// still up at the deadline is forced, dependants still first, within
// forceGrace.
func (e *env) shutdown(timeout time.Duration) (shutdownReport, error) {
	t0 := time.Now()
	// One event stream for all the VMs, opened before the first stop so
	// that no end is missed, however many VMs there are.
	w, err := e.watchRest()
	if err != nil {
		return shutdownReport{}, err
	}
	defer w.close()
	list, err := e.client().List(e.ctx)
	if err != nil {
		return shutdownReport{}, err
	}
	deadline, cancelDeadline := context.WithDeadline(e.ctx, t0.Add(timeout))
	defer cancelDeadline()
	end, cancelEnd := context.WithDeadline(e.ctx, t0.Add(timeout+forceGrace))
	defer cancelEnd()

	active := map[string]bool{}
	var results []shutdownVM
	for _, st := range list {
		waiting := st.State == api.StateStopped && len(st.WaitingFor) > 0
		switch {
		case st.State == api.StateStopped && !waiting:
			results = append(results, shutdownVM{Name: st.Name, Result: endAlreadyStopped, State: st.State})
		case st.State == api.StateFailed:
			results = append(results, shutdownVM{Name: st.Name, Result: endAlreadyFailed, State: st.State})
		case st.State == api.StateSuspended:
			results = append(results, shutdownVM{Name: st.Name, Result: endAlreadySusp, State: st.State})
		default:
			active[st.Name] = true
		}
	}
	// done[n] closes once n is at rest (or given up on): the VMs it
	// depends on may then stop.
	done := make(map[string]chan struct{}, len(active))
	dependants := map[string][]string{}
	for _, st := range list {
		if !active[st.Name] {
			continue
		}
		done[st.Name] = make(chan struct{})
		for _, d := range st.Depends {
			if d != st.Name {
				dependants[d] = append(dependants[d], st.Name)
			}
		}
	}
	if !e.json() && len(active) > 0 {
		progressMu.Lock()
		fmt.Fprintf(e.stdout, "shutdown: stopping %d VM(s), forcing what is left after %s\n", len(active), shortDuration(timeout))
		progressMu.Unlock()
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	suspend := map[string]bool{}
	for _, st := range list {
		suspend[st.Name] = st.OnHostShutdown == "suspend"
	}
	for name := range active {
		var after []chan struct{}
		for _, d := range dependants[name] {
			if ch, ok := done[d]; ok {
				after = append(after, ch)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[name])
			r := w.shutdownOne(name, suspend[name], after, deadline, end)
			if !e.json() {
				progressMu.Lock()
				fmt.Fprintf(e.stdout, "%s: %s\n", name, describeEnd(r))
				progressMu.Unlock()
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	rep := shutdownReport{Timeout: timeout.Seconds(), Seconds: roundSeconds(time.Since(t0)), VMs: results}
	if e.ctx.Err() != nil {
		return rep, e.ctx.Err()
	}
	return rep, nil
}

// waitAll waits until every channel is closed; false when ctx ends first.
func waitAll(ctx context.Context, chans []chan struct{}) bool {
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// shutdownOne stops one VM once the VMs depending on it (after) are done:
// gracefully until deadline, then forced until end. A VM with
// on_host_shutdown = suspend is suspended instead, wanted running, so that
// it resumes when the host is up again; one whose suspend fails is
// stopped.
func (w *restWatch) shutdownOne(name string, suspend bool, after []chan struct{}, deadline, end context.Context) shutdownVM {
	var t0 time.Time
	if waitAll(deadline, after) {
		t0 = time.Now()
		if suspend {
			st, err := w.suspendAndWait(deadline, name)
			if err == nil && st.State == api.StateSuspended {
				return outcome(name, st, nil, t0, false)
			}
			if deadline.Err() != nil {
				goto forced
			}
		}
		st, err := w.stopAndWait(deadline, name, api.StopOptions{})
		if err == nil || deadline.Err() == nil {
			return outcome(name, st, err, t0, false)
		}
	}
forced:
	// The deadline passed: the VMs that depend on this one are being
	// forced too; give them the little it takes to go first.
	waitAll(end, after)
	if t0.IsZero() {
		t0 = time.Now()
	}
	st, err := w.stopAndWait(end, name, api.StopOptions{Force: true})
	return outcome(name, st, err, t0, true)
}

// stopAndWait asks for a stop and waits, until ctx ends, for the VM to
// rest. A forced stop of a VM already stopping kills its hypervisor.
func (w *restWatch) stopAndWait(ctx context.Context, name string, opts api.StopOptions) (api.Status, error) {
	err := w.call(ctx, func() error {
		_, err := w.c.Stop(ctx, name, opts)
		return err
	})
	if err != nil && !errors.Is(err, api.ErrConflict) { // conflict: already on its way down
		return api.Status{}, err
	}
	st, err := w.wait(ctx, name)
	if err != nil && ctx.Err() != nil {
		// Say where it is now, with a context that is still alive.
		gctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		if cur, gerr := w.get(gctx, name); gerr == nil {
			st = cur
		}
		cancel()
	}
	return st, err
}

// suspendAndWait asks for a suspend that keeps the VM wanted running and
// waits until the VM rests; a VM that cannot be suspended now (still
// starting, not QEMU) or whose save failed (it runs on) comes back
// running, for the caller to stop.
func (w *restWatch) suspendAndWait(ctx context.Context, name string) (api.Status, error) {
	err := w.call(ctx, func() error {
		_, err := w.c.Suspend(ctx, name, api.SuspendOptions{Resume: true})
		return err
	})
	if err != nil {
		return api.Status{}, err
	}
	return w.wait(ctx, name)
}

// restWatch follows one event stream for every VM and tells each waiter
// when its VM may have come to rest (stopped or failed).
type restWatch struct {
	ctx    context.Context
	c      *api.Client
	cancel context.CancelFunc
	// inFlight bounds the requests sent at once, so that a host with
	// many VMs does not open a connection per VM.
	inFlight chan struct{}

	mu    sync.Mutex
	rests map[string]chan struct{} // a VM's waiter, told of each rest
	ended chan struct{}            // closed when the stream is gone for good
}

// restPoll is how often a waiter looks again when the event stream is gone.
const restPoll = time.Second

func (e *env) watchRest() (*restWatch, error) {
	ctx, cancel := context.WithCancel(e.ctx)
	w := &restWatch{ctx: ctx, c: e.client(), cancel: cancel, inFlight: make(chan struct{}, 8),
		rests: map[string]chan struct{}{}, ended: make(chan struct{})}
	s, err := w.c.Events(ctx, api.EventOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	go w.follow(s)
	return w, nil
}

func (w *restWatch) close() { w.cancel() }

// follow reads the stream, resuming it when the daemon ends it.
func (w *restWatch) follow(s *api.EventStream) {
	defer close(w.ended)
	for {
		ev, err := s.Next()
		if err != nil {
			s.Close()
			w.poke("") // something may have been missed
			if w.ctx.Err() != nil || !errors.Is(err, io.EOF) {
				return
			}
			next, err := w.c.Events(w.ctx, api.EventOptions{After: s.Last})
			if err != nil {
				return
			}
			s = next
			continue
		}
		switch {
		case ev.Kind == api.KindLost:
			w.poke("")
		case ev.Kind == api.KindTransition && (ev.To == api.StateStopped || ev.To == api.StateFailed || ev.To == api.StateSuspended),
			ev.Kind == api.KindTransition && ev.From == api.StateSuspending && ev.To == api.StateRunning,
			ev.Kind == api.KindConfig && ev.Reason == "removed":
			w.poke(ev.VM)
		}
	}
}

// poke wakes the waiter of vm, or every waiter for "".
func (w *restWatch) poke(vm string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, ch := range w.rests {
		if vm == "" || vm == name {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// call runs one request within the bound on requests in flight.
func (w *restWatch) call(ctx context.Context, f func() error) error {
	select {
	case w.inFlight <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.inFlight }()
	return f()
}

func (w *restWatch) get(ctx context.Context, name string) (st api.Status, err error) {
	err = w.call(ctx, func() error {
		st, err = w.c.Get(ctx, name)
		return err
	})
	return st, err
}

// wait returns once the VM rests in stopped, failed or suspended, or ctx
// ends; or, after a suspend whose save failed, runs on.
func (w *restWatch) wait(ctx context.Context, name string) (api.Status, error) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.rests[name] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.rests, name)
		w.mu.Unlock()
	}()
	for {
		st, err := w.get(ctx, name)
		if errors.Is(err, api.ErrNotFound) {
			// Its directory was removed while it ran: the daemon drops
			// such a VM once it has stopped.
			return api.Status{Name: name, State: api.StateStopped, Reason: "removed"}, nil
		}
		if err != nil {
			return st, err
		}
		if st.State == api.StateStopped || st.State == api.StateFailed || st.State == api.StateSuspended {
			return st, nil
		}
		if (st.State == api.StateRunning || st.State == api.StatePaused) && st.Desired == api.StateRunning && strings.HasPrefix(st.Reason, "suspend failed") {
			return st, nil
		}
		var poll *time.Timer
		var polled <-chan time.Time
		select {
		case <-w.ended:
			// No more events: look again now and then.
			poll = time.NewTimer(restPoll)
			polled = poll.C
		default:
		}
		select {
		case <-ch:
		case <-polled:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if poll != nil {
			poll.Stop()
		}
		if err != nil {
			return st, err
		}
	}
}

// outcome names how a VM's stop ended.
func outcome(name string, st api.Status, err error, t0 time.Time, forced bool) shutdownVM {
	r := shutdownVM{Name: name, State: st.State, Forced: forced, Seconds: roundSeconds(time.Since(t0))}
	if st.LastExit != nil && !st.LastExit.Time.Before(t0.Add(-time.Second)) {
		r.Exit = st.LastExit
	}
	switch {
	case st.State == api.StateFailed:
		r.Result = endFailed
		r.Error = st.Reason
		if err != nil && r.Error == "" {
			r.Error = err.Error()
		}
		return r
	case err == nil && st.State == api.StateSuspended:
		r.Result = endSuspended
		return r
	case err != nil || st.State != api.StateStopped:
		r.Result = endNotStopped
		if err != nil {
			r.Error = oneLine(err.Error())
		}
		return r
	}
	switch {
	case r.Exit != nil && r.Exit.Reason == "poweroff":
		r.Result = endPoweredOff
	case r.Exit != nil && r.Exit.Reason == "killed" && forced:
		r.Result = endForcedDeadline
	case r.Exit != nil && r.Exit.Reason == "killed":
		r.Result = endForcedTimeout
	default:
		r.Result = endStopped
	}
	return r
}

// describeEnd is one VM's line of the report.
func describeEnd(r shutdownVM) string {
	s := r.Result
	if r.Result != endAlreadyStopped && r.Result != endAlreadyFailed && r.Result != endAlreadySusp {
		s += fmt.Sprintf(" in %.2fs", r.Seconds)
	}
	var notes []string
	if r.Exit != nil && r.Result == endStopped {
		notes = append(notes, "guest "+r.Exit.Reason)
	}
	if r.Result == endNotStopped {
		notes = append(notes, "still "+string(r.State))
	}
	if r.Error != "" {
		notes = append(notes, r.Error)
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, "; ") + ")"
	}
	return s
}

// printShutdown prints the report: one line per VM, then the totals.
func printShutdown(e *env, rep shutdownReport) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRESULT\tSECONDS\tEXIT")
	count := map[string]int{}
	for _, r := range rep.VMs {
		secs, exit := "-", "-"
		if r.Result != endAlreadyStopped && r.Result != endAlreadyFailed && r.Result != endAlreadySusp {
			secs = fmt.Sprintf("%.2f", r.Seconds)
		}
		if r.Exit != nil {
			exit = r.Exit.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Result, secs, exit)
		count[r.Result]++
	}
	tw.Flush()
	var parts []string
	for _, o := range endOrder {
		if count[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[o], o))
		}
	}
	sum := "no VMs"
	if len(parts) > 0 {
		sum = strings.Join(parts, ", ")
	}
	fmt.Fprintf(e.stdout, "shutdown: %d VM(s) in %.2fs (deadline %s): %s\n",
		len(rep.VMs), rep.Seconds, shortDuration(time.Duration(rep.Timeout*float64(time.Second))), sum)
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}

// shortDuration shows d without the zero units Go's String adds: "5m",
// not "5m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
