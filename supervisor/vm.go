package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// Steps of work whose outcome comes back to the actor.
const (
	stepHook    = "hook"
	stepLaunch  = "launch"
	stepRestart = "restart"
	stepStop    = "stop"
	stepDeps    = "deps"
	stepNotify  = "notify"  // a hook whose outcome changes nothing (stopped, failed)
	stepJournal = "journal" // what became of a hook the last daemon ran
)

// killWait bounds the wait for a process to disappear after SIGKILL.
const killWait = 30 * time.Second

// controlTimeout bounds a control request to a hypervisor (pause, resume,
// shutdown request).
const controlTimeout = 10 * time.Second

// vm is the actor of one VM. Its goroutine (run) is the only one that
// touches the fields below the line; everything else talks to it through
// inbox. Work that takes time (hooks, launches, stops) runs in goroutines
// that report back as workResult messages, so the actor always answers.
type vm struct {
	name   string
	sup    *Supervisor
	log    *vmLog
	inbox  chan any
	done   chan struct{} // closed when run returns
	status atomic.Pointer[Status]

	// ---- owned by run ----
	m          *statemachine.Machine
	cfg        *settings // in force
	pending    *settings // to apply at the next start
	configErr  string
	removed    bool
	dropped    bool
	desired    statemachine.State
	inst       hypervisor.Instance
	lastExit   *hypervisor.Exit
	lastReason string
	// hook is the state whose hook the VM waits for before it moves on
	// (or, in running, before it counts as up); "" when none.
	hook statemachine.State
	gen  uint64 // numbers the work in flight; older results are stale
	// lastWork is closed when the most recently spawned ordered work has
	// finished. Ordered work waits for its predecessor, so a VM's hooks run
	// one at a time and in the order of the states entered.
	lastWork chan struct{}
	stopOpts StopOptions
	deadline time.Time // when a graceful stop in progress turns forced
	// recovery is the record being recovered from after a daemon restart.
	recovery *recovering
	// orphan notes a hypervisor process found without a record.
	orphan string
	// resetAsked marks the running instance as reset by a user: its next
	// reboot-like exit is the reset, not the guest's doing.
	resetAsked hypervisor.Instance
	// access relays the guest's console and VNC (console.go, vnc.go).
	access guestAccess
}

// opReset is the reset command; it changes no state by itself.
const opReset statemachine.Event = "reset"

// command is a request from a user.
type command struct {
	op     statemachine.Event
	stop   StopOptions
	reason string // why, when not a user's request (autostart)
	reply  chan error
}

// workResult is the outcome of a piece of work started by the actor.
type workResult struct {
	gen    uint64
	step   string
	ok     bool
	reason string
	inst   hypervisor.Instance
	// rerun: a hook interrupted by a daemon restart has to run again.
	rerun bool
	// skipped: the state has no hook.
	skipped bool
}

// configUpdate carries a config change to the actor.
type configUpdate struct {
	cfg     *settings // nil when only errors changed
	errText string    // the load errors, "" when the config is fine
	removed bool
}

// inspect runs fn inside the actor (for answers that need its fields).
type inspect struct {
	fn   func()
	done chan struct{}
}

func newVM(sup *Supervisor, name string, cfg *settings, log *vmLog, initial statemachine.State, since time.Time) *vm {
	v := &vm{
		name:    name,
		sup:     sup,
		log:     log,
		inbox:   make(chan any, 16),
		done:    make(chan struct{}),
		cfg:     cfg,
		desired: statemachine.Stopped,
	}
	opts := statemachine.Options{Name: name, Initial: initial, Now: sup.now, Since: since}
	if cfg != nil {
		opts.MaxRestart, opts.MaxRestartTime = cfg.maxRestart, cfg.maxRestartTime
	}
	v.m = statemachine.New(opts)
	v.publishStatus()
	return v
}

// send delivers a message to the actor unless it has ended.
func (v *vm) send(ctx context.Context, msg any) error {
	select {
	case v.inbox <- msg:
		return nil
	case <-v.done:
		return ErrShuttingDown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do sends a command and waits for the actor's answer.
func (v *vm) do(ctx context.Context, c command) error {
	c.reply = make(chan error, 1)
	if err := v.send(ctx, c); err != nil {
		return err
	}
	select {
	case err := <-c.reply:
		return err
	case <-v.done:
		return ErrShuttingDown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the actor loop.
func (v *vm) run(ctx context.Context) {
	defer close(v.done)
	for !v.dropped {
		var exited <-chan struct{}
		if v.inst != nil && watchesExit(v.m.State()) {
			exited = v.inst.Done()
		}
		select {
		case <-ctx.Done():
			return
		case msg := <-v.inbox:
			if ctx.Err() != nil {
				// The daemon is exiting. Both cases of the select were
				// ready; a result now is most likely work cut short by
				// the exit, which must not count as its failure. The
				// journal and the record tell the next daemon where
				// the VM stands.
				return
			}
			v.handle(ctx, msg)
		case <-exited:
			v.onExit(ctx)
		}
		v.publishStatus()
	}
}

// watchesExit reports whether an exit of the hypervisor in s is news to be
// acted on. In other states an exit is expected (stopping, restarting) or
// no hypervisor runs.
func watchesExit(s statemachine.State) bool {
	switch s {
	case statemachine.Running, statemachine.Paused, statemachine.Restarted:
		return true
	}
	return false
}

func (v *vm) handle(ctx context.Context, msg any) {
	switch m := msg.(type) {
	case command:
		m.reply <- v.onCommand(ctx, m)
	case workResult:
		v.onWork(ctx, m)
	case configUpdate:
		v.onConfig(m)
	case inspect:
		m.fn()
		close(m.done)
	case recovering:
		v.onRecover(ctx, m)
	}
}

// fire moves the machine and performs what the new state stands for.
func (v *vm) fire(ctx context.Context, e statemachine.Event, reason string) error {
	tr, err := v.m.Fire(e, reason)
	if err != nil {
		return err
	}
	v.enter(ctx, tr)
	return nil
}

func (v *vm) enter(ctx context.Context, tr statemachine.Transition) {
	v.lastReason = tr.Reason
	msg := fmt.Sprintf("%s -> %s (%s)", tr.From, tr.To, tr.Event)
	if tr.Reason != "" {
		msg += ": " + tr.Reason
	}
	v.log.Printf("%s", msg)
	v.hook = ""
	if hookStep(tr.To) {
		v.hook = tr.To
	}
	// Status first: whoever reacts to the event must find it up to date.
	v.publishStatus()
	v.sup.bus.Publish(Event{Time: tr.Time, Kind: KindTransition, VM: v.name, Event: tr.Event,
		From: tr.From, To: tr.To, Reason: tr.Reason})
	v.persist()

	st := tr.To
	switch {
	case hookStep(st):
		v.runStateHook(ctx, st, tr)
	case st == statemachine.Restarting:
		old := v.inst
		if old != nil && isDone(old) {
			old = nil
		}
		v.inst = nil
		v.spawn(ctx, stepRestart, v.restartWork(old, tr))
	case st == statemachine.Stopping:
		v.startStop(ctx, tr, nil)
	case st == statemachine.Stopped || st == statemachine.Failed:
		v.inst = nil
		v.desired = statemachine.Stopped
		v.spawn(ctx, stepNotify, v.hookWork(st, tr))
		v.applyPending()
		if v.removed {
			v.log.Printf("config directory removed: dropping the VM now that it is %s", st)
			v.dropped = true
			v.sup.forget(v)
			return
		}
	}
	// A stop asked for while the VM was busy takes effect here, at the
	// first state that can stop.
	if v.desired == statemachine.Stopped && v.m.Can(statemachine.Stop) {
		_ = v.fire(ctx, statemachine.Stop, "stop requested")
	}
}

// hookStep reports whether the work of state s is its hook alone, which
// the VM waits for (the status shows it as the pending hook).
func hookStep(s statemachine.State) bool {
	switch s {
	case statemachine.StartNetwork, statemachine.StartStorage, statemachine.StopStorage,
		statemachine.StopNetwork, statemachine.Running, statemachine.Paused, statemachine.Restarted:
		return true
	}
	return false
}

// runStateHook runs the hook of st as the step the VM waits for; the
// actor loop publishes the status with it once the message is handled.
func (v *vm) runStateHook(ctx context.Context, st statemachine.State, tr statemachine.Transition) {
	v.hook = st
	v.spawn(ctx, stepHook, v.hookWork(st, tr))
}

// hookFinished notes that the hook of the current state has reported: as
// an event, and, when it succeeded, in the status first, so that whoever
// waits for the VM to be up (a dependant, vmstatedctl start -w) finds the
// status current. A failed hook stays pending in the status until the
// transition its failure causes: the VM must never look up in between.
func (v *vm) hookFinished(r workResult) {
	st := v.hook
	if st == "" {
		return
	}
	reason := ""
	if r.ok {
		v.hook = ""
		v.publishStatus()
	} else {
		reason = r.reason
		if reason == "" {
			reason = "hook " + string(st) + " failed"
		}
	}
	v.sup.bus.Publish(Event{Time: v.sup.now(), Kind: KindHook, VM: v.name, To: st, Reason: reason, Skipped: r.skipped})
}

// spawn runs work in its own goroutine; its result comes back to the actor
// tagged with a new generation, which makes results of older work stale.
// Work that runs hooks starts only when the work spawned before it has
// finished: a stop that arrives while the running hook runs does not start
// the stopping hook beside it.
func (v *vm) spawn(ctx context.Context, step string, work func(context.Context) workResult) {
	v.gen++
	gen := v.gen
	var prev, mine chan struct{}
	if step != stepDeps {
		prev, mine = v.lastWork, make(chan struct{})
		v.lastWork = mine
	}
	v.sup.wg.Add(1)
	go func() {
		defer v.sup.wg.Done()
		if mine != nil {
			defer close(mine)
		}
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
			}
		}
		r := work(ctx)
		r.gen, r.step = gen, step
		select {
		case v.inbox <- r:
		case <-v.done:
		}
	}()
}

func isDone(inst hypervisor.Instance) bool {
	select {
	case <-inst.Done():
		return true
	default:
		return false
	}
}

// hookWork runs the hook of state st.
func (v *vm) hookWork(st statemachine.State, tr statemachine.Transition) func(context.Context) workResult {
	call := v.hookCall(st, tr)
	return func(ctx context.Context) workResult {
		o := v.sup.runHook(ctx, call, v.log)
		return workResult{ok: o.ok, reason: o.reason, skipped: o.skipped}
	}
}

func (v *vm) onWork(ctx context.Context, r workResult) {
	if r.step == stepJournal && r.gen == v.gen {
		v.afterJournal(ctx, r)
		return
	}
	if r.step == stepRecover && r.gen == v.gen {
		if !r.ok {
			v.resume(ctx, nil, r.reason)
		} else {
			v.resume(ctx, r.inst, "")
		}
		return
	}
	if r.gen != v.gen || r.step == stepNotify {
		if r.step == stepNotify && !r.ok {
			v.log.Printf("%s", r.reason)
		}
		return
	}
	if r.step == stepHook {
		v.hookFinished(r)
	}
	stopWanted := v.desired == statemachine.Stopped
	switch st := v.m.State(); st {
	case statemachine.StartNetwork:
		switch {
		case !r.ok:
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		case stopWanted:
			_ = v.fire(ctx, statemachine.Abort, "stop requested while starting")
		default:
			_ = v.fire(ctx, statemachine.Done, "")
		}
	case statemachine.StartStorage:
		switch {
		case r.step == stepHook && !r.ok:
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		case r.step == stepHook && stopWanted:
			_ = v.fire(ctx, statemachine.Abort, "stop requested while starting")
		case r.step == stepHook:
			s := v.cfg
			v.spawn(ctx, stepLaunch, func(ctx context.Context) workResult {
				inst, err := v.launch(ctx, s)
				if err != nil {
					return workResult{reason: err.Error()}
				}
				return workResult{ok: true, inst: inst}
			})
		case r.step == stepLaunch && !r.ok:
			v.m.MarkFailed("launch failed: " + r.reason)
			_ = v.fire(ctx, statemachine.Abort, "launch failed: "+r.reason)
		case r.step == stepLaunch:
			v.setInstance(r.inst)
			_ = v.fire(ctx, statemachine.Done, fmt.Sprintf("%s started, pid %d", v.cfg.driver, r.inst.Handle().PID))
		}
	case statemachine.Running, statemachine.Paused:
		if !r.ok {
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		}
	case statemachine.Restarted:
		if !r.ok {
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		} else {
			_ = v.fire(ctx, statemachine.Done, "")
		}
	case statemachine.Restarting:
		if r.inst != nil {
			v.setInstance(r.inst)
		}
		if !r.ok {
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		} else {
			_ = v.fire(ctx, statemachine.Done, fmt.Sprintf("%s relaunched, pid %d", v.cfg.driver, r.inst.Handle().PID))
		}
	case statemachine.Stopping:
		if v.inst != nil {
			if ex, ok := v.inst.Exit(); ok {
				v.lastExit = &ex
			}
		}
		v.inst = nil
		v.deadline = time.Time{}
		if !r.ok {
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		} else {
			_ = v.fire(ctx, statemachine.Done, r.reason)
		}
	case statemachine.StopStorage, statemachine.StopNetwork:
		if !r.ok {
			_ = v.fire(ctx, statemachine.Fail, r.reason)
		} else {
			_ = v.fire(ctx, statemachine.Done, "")
		}
	case statemachine.Stopped:
		if r.step == stepDeps {
			v.onDeps(ctx, r)
		}
	}
}

func (v *vm) setInstance(inst hypervisor.Instance) {
	v.inst = inst
	v.persist()
}

// launch starts the hypervisor for settings s.
func (v *vm) launch(ctx context.Context, s *settings) (hypervisor.Instance, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: %s has no valid config to launch from", ErrInvalidConfig, v.name)
	}
	drv := v.sup.drivers[s.driver]
	if drv == nil {
		return nil, fmt.Errorf("no %q driver in this daemon (hypervisor = %s in %s)", s.driver, s.driver, s.file)
	}
	spec := s.spec
	spec.Name = s.name
	spec.RunDir = filepath.Join(v.sup.runDir, s.name)
	spec.Output = v.log.Writer(s.driver)
	spec.Console = v.consoleOutput()
	return drv.Start(ctx, spec)
}

// restartWork stops the old hypervisor when it still runs (a restart asked
// for by a user), runs the restarting hook and launches a new one.
func (v *vm) restartWork(old hypervisor.Instance, tr statemachine.Transition) func(context.Context) workResult {
	call := v.hookCall(statemachine.Restarting, tr)
	s := v.cfg
	timeout := 60 * time.Second
	if s != nil && s.stopTimeout > 0 {
		timeout = s.stopTimeout
	}
	return func(ctx context.Context) workResult {
		if old != nil {
			if err := v.stopInstance(ctx, old, false, timeout, nil); err != nil {
				return workResult{reason: err.Error()}
			}
		}
		if o := v.sup.runHook(ctx, call, v.log); !o.ok {
			return workResult{reason: o.reason}
		}
		inst, err := v.launch(ctx, s)
		if err != nil {
			return workResult{reason: "relaunch failed: " + err.Error()}
		}
		return workResult{ok: true, inst: inst}
	}
}

// hookDone is the outcome of a hook that already ran (found in its
// journal after a daemon restart).
type hookDone struct {
	ok     bool
	reason string
}

// startStop begins the stopping state's work: the stopping hook (unless
// done says it already ran), then a graceful stop of the hypervisor with a
// deadline, then force.
func (v *vm) startStop(ctx context.Context, tr statemachine.Transition, done *hookDone) {
	inst := v.inst
	if inst != nil && isDone(inst) {
		inst = nil
	}
	opts := v.stopOpts
	v.stopOpts = StopOptions{}
	timeout := opts.Timeout
	if timeout <= 0 && v.cfg != nil {
		timeout = v.cfg.stopTimeout
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if inst != nil && !opts.Force {
		// Persisted, so that a daemon restart re-arms it.
		v.deadline = v.sup.now().Add(timeout)
		v.persist()
	}
	wasPaused := tr.From == statemachine.Paused
	call := v.hookCall(statemachine.Stopping, tr)
	v.spawn(ctx, stepStop, func(ctx context.Context) workResult {
		var ok bool
		var reason string
		if done != nil {
			ok, reason = done.ok, done.reason
		} else {
			o := v.sup.runHook(ctx, call, v.log)
			ok, reason = o.ok, o.reason
		}
		if inst != nil {
			if wasPaused {
				// A frozen guest cannot answer the power button.
				if p, isPauser := inst.(hypervisor.Pauser); isPauser {
					rctx, cancel := context.WithTimeout(ctx, controlTimeout)
					_ = p.Resume(rctx)
					cancel()
				}
			}
			if err := v.stopInstance(ctx, inst, opts.Force, timeout, v.log); err != nil {
				if ok {
					ok, reason = false, err.Error()
				}
			} else if ok {
				if ex, have := inst.Exit(); have {
					reason = "hypervisor exited: " + ex.String()
				}
			}
		}
		return workResult{ok: ok, reason: reason}
	})
}

// stopInstance asks the guest to power off, waits up to timeout, then kills
// the process and waits for it to go. force skips the request.
func (v *vm) stopInstance(ctx context.Context, inst hypervisor.Instance, force bool, timeout time.Duration, log *vmLog) error {
	if isDone(inst) {
		return nil
	}
	if !force {
		sctx, cancel := context.WithTimeout(ctx, controlTimeout)
		err := inst.Shutdown(sctx)
		cancel()
		if ctx.Err() != nil {
			// The daemon is exiting: the VM outlives it, and the next
			// daemon continues this stop from its record.
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, hypervisor.ErrExited) {
			if log != nil {
				log.Printf("asking the guest to power off failed: %v; forcing", err)
			}
		} else {
			t := time.NewTimer(timeout)
			select {
			case <-inst.Done():
				t.Stop()
				return nil
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
				if log != nil {
					log.Printf("guest did not power off within %s; forcing", statemachine.FormatDuration(timeout))
				}
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := inst.Kill(); err != nil && log != nil {
		log.Printf("kill: %v", err)
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-inst.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("hypervisor pid %d still there %s after it was killed", inst.Handle().PID, killWait)
	}
}

// onExit handles a hypervisor exit in a state that watches for one.
func (v *vm) onExit(ctx context.Context) {
	ex, _ := v.inst.Exit()
	wasReset := v.resetAsked == v.inst
	v.resetAsked = nil
	v.lastExit = &ex
	v.inst = nil
	v.log.Printf("hypervisor exited: %s (status %d%s)", ex, ex.Code, signalSuffix(ex.Signal))
	if wasReset && ex.Reason == hypervisor.ExitReboot && v.desired == statemachine.Running {
		// The reset a user asked for: relaunch like a restart, outside
		// the budget.
		_ = v.fire(ctx, statemachine.Restart, "reset requested")
		return
	}
	v.afterExit(ctx, ex)
}

// afterExit applies the exit policy to a hypervisor exit.
func (v *vm) afterExit(ctx context.Context, ex hypervisor.Exit) {
	why := "guest " + string(ex.Reason)
	if ex.Detail != "" {
		why += " (" + ex.Detail + ")"
	}
	if v.desired == statemachine.Stopped {
		_ = v.fire(ctx, statemachine.Exited, why)
		return
	}
	policy := PolicyStop
	if v.cfg != nil {
		policy = v.cfg.policyFor(ex.Reason)
	}
	switch policy {
	case PolicyRestart:
		_ = v.fire(ctx, statemachine.AutoRestart, why)
		if v.m.State() == statemachine.Stopping {
			v.desired = statemachine.Stopped // the budget is spent
		}
	case PolicyFail:
		v.m.MarkFailed(why)
		v.desired = statemachine.Stopped
		_ = v.fire(ctx, statemachine.Exited, why)
	default:
		v.desired = statemachine.Stopped
		_ = v.fire(ctx, statemachine.Exited, why)
	}
}

func signalSuffix(sig string) string {
	if sig == "" {
		return ""
	}
	return ", signal " + sig
}

func (v *vm) onCommand(ctx context.Context, c command) error {
	st := v.m.State()
	switch c.op {
	case statemachine.Start:
		if v.cfg == nil {
			return fmt.Errorf("%w: %s has no valid config: %s", ErrInvalidConfig, v.name, v.configErr)
		}
		if st != statemachine.Stopped {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		if v.desired == statemachine.Running {
			return nil // already waiting for its dependencies
		}
		v.applyPending()
		v.desired = statemachine.Running
		reason := c.reason
		if reason == "" {
			reason = "start requested"
		}
		if len(v.cfg.depends) > 0 {
			v.lastReason = "waiting for " + strings.Join(v.cfg.depends, ", ")
			deps := v.cfg.depends
			v.spawn(ctx, stepDeps, func(ctx context.Context) workResult {
				if err := v.sup.startDeps(ctx, v.name, deps); err != nil {
					return workResult{reason: err.Error()}
				}
				return workResult{ok: true}
			})
			return nil
		}
		return v.fire(ctx, statemachine.Start, reason)

	case statemachine.Stop:
		switch {
		case st == statemachine.Stopped && v.desired == statemachine.Running:
			// Waiting for dependencies: forget the start.
			v.desired = statemachine.Stopped
			v.gen++
			v.lastReason = "start cancelled"
			return nil
		case st == statemachine.Stopping:
			if c.stop.Force && v.inst != nil {
				v.log.Printf("forced stop requested")
				_ = v.inst.Kill()
			}
			return nil
		case st == statemachine.StopStorage || st == statemachine.StopNetwork:
			return nil // already on its way down
		case st == statemachine.StartNetwork || st == statemachine.StartStorage || st == statemachine.Restarting:
			v.desired = statemachine.Stopped
			v.stopOpts = c.stop
			v.log.Printf("stop requested while %s: it takes effect when this step ends", st)
			return nil
		}
		if !v.m.Can(statemachine.Stop) {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		v.desired = statemachine.Stopped
		v.stopOpts = c.stop
		reason := "stop requested"
		if c.stop.Force {
			reason = "forced stop requested"
		}
		return v.fire(ctx, statemachine.Stop, reason)

	case statemachine.Restart:
		if !v.m.Can(c.op) {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		v.desired = statemachine.Running
		return v.fire(ctx, statemachine.Restart, "restart requested")

	case statemachine.Pause, statemachine.Unpause:
		if !v.m.Can(c.op) {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		p, ok := v.inst.(hypervisor.Pauser)
		if !ok || v.inst == nil {
			return fmt.Errorf("%w: %s cannot %s %s", hypervisor.ErrNotSupported, v.cfg.driver, c.op, v.name)
		}
		cctx, cancel := context.WithTimeout(ctx, controlTimeout)
		defer cancel()
		var err error
		if c.op == statemachine.Pause {
			err = p.Pause(cctx)
		} else {
			err = p.Resume(cctx)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", c.op, v.name, err)
		}
		return v.fire(ctx, c.op, string(c.op)+" requested")

	case opReset:
		if v.inst == nil || !watchesExit(st) {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		r, ok := v.inst.(hypervisor.Resetter)
		if !ok {
			return fmt.Errorf("%w: the %s driver cannot reset (vm %s)", hypervisor.ErrNotSupported, v.inst.Handle().Driver, v.name)
		}
		v.log.Printf("hard reset requested")
		v.resetAsked = v.inst
		cctx, cancel := context.WithTimeout(ctx, controlTimeout)
		defer cancel()
		if err := r.Reset(cctx); err != nil {
			v.resetAsked = nil
			return fmt.Errorf("reset %s: %w", v.name, err)
		}
		return nil

	case statemachine.FailReset:
		if !v.m.Can(c.op) {
			return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: st}
		}
		return v.fire(ctx, statemachine.FailReset, "failreset requested")
	}
	return fmt.Errorf("unknown command %q", c.op)
}

// onDeps handles the outcome of waiting for the VMs this one depends on.
func (v *vm) onDeps(ctx context.Context, r workResult) {
	if v.desired != statemachine.Running {
		return
	}
	if !r.ok {
		v.desired = statemachine.Stopped
		_ = v.fire(ctx, statemachine.Fail, r.reason)
		return
	}
	_ = v.fire(ctx, statemachine.Start, "dependencies running")
}

func (v *vm) onConfig(u configUpdate) {
	note := func(what string) {
		v.sup.bus.Publish(Event{Kind: KindConfig, VM: v.name, Reason: what})
	}
	if u.removed {
		if v.removed {
			return
		}
		v.removed = true
		note("removed")
		st := v.m.State()
		if st == statemachine.Stopped || st == statemachine.Failed {
			v.log.Printf("config directory removed")
			v.dropped = true
			v.sup.forget(v)
			return
		}
		v.log.Printf("config directory removed while %s: the VM keeps running and is dropped once stopped", st)
		return
	}
	v.removed = false
	if u.errText != "" {
		if u.errText != v.configErr {
			v.configErr = u.errText
			v.log.Printf("config not loaded, the previous one stays in force: %s", u.errText)
			note("invalid: " + u.errText)
		}
		return
	}
	fixed := v.configErr != ""
	v.configErr = ""
	if u.cfg == nil {
		return
	}
	current := v.cfg
	if v.pending != nil {
		current = v.pending
	}
	if current != nil && u.cfg.digest == current.digest {
		if fixed {
			note("valid again, unchanged")
		}
		return
	}
	if v.cfg != nil && u.cfg.digest == v.cfg.digest {
		// Changed back to what is in force: nothing waits any more.
		v.pending = nil
		note("changed back")
		return
	}
	v.pending = u.cfg
	st := v.m.State()
	if st == statemachine.Stopped || st == statemachine.Failed || v.cfg == nil {
		v.applyPending()
		note("changed, in force")
	} else {
		v.log.Printf("config changed; it applies at the next start (the VM is %s)", st)
		note("changed, pending until the next start")
	}
}

// applyPending puts a waiting config in force.
func (v *vm) applyPending() {
	if v.pending == nil {
		return
	}
	first := v.cfg == nil
	v.cfg, v.pending = v.pending, nil
	v.m.SetBudget(v.cfg.maxRestart, v.cfg.maxRestartTime)
	v.log.setLimits(logLimits(v.cfg))
	if !first {
		v.log.Printf("new config in force")
	}
}

func (v *vm) publishStatus() {
	s := &Status{
		Name:        v.name,
		State:       v.m.State(),
		Desired:     v.desired,
		Since:       v.m.Since(),
		Reason:      v.lastReason,
		ConfigError: v.configErr,
		Pending:     v.pending != nil,
		Removed:     v.removed,
		LastExit:    v.lastExit,
		Hook:        v.hook,
	}
	if f := v.m.Failure(); f != "" {
		s.Reason = f
	}
	if v.orphan != "" {
		s.Reason = strings.TrimPrefix(s.Reason+"; "+v.orphan, "; ")
	}
	if v.inst != nil && !isDone(v.inst) {
		s.PID = v.inst.Handle().PID
		s.instance = v.inst
	}
	if c := v.cfg; c != nil {
		s.Hypervisor, s.CPUs, s.MemoryMB = c.driver, c.spec.CPUs, c.spec.MemoryMB
		s.Owner, s.Group, s.Description, s.Dir = c.owner, c.group, c.description, c.dir
		s.Autostart, s.Depends, s.MaxRestart = c.autostart, c.depends, c.maxRestart
	}
	b := v.m.Budget()
	s.restartTimes, s.window = b.Times(), b.Window
	v.status.Store(s)
	v.syncAccess(s)
}
