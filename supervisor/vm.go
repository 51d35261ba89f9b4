package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmstated/vmstated/hooks"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/vmnet"
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
	inbox  chan message
	done   chan struct{} // closed when run returns
	status atomic.Pointer[Status]
	// receiving is held by the one Receive that may write the VM's
	// receive file: a second would truncate it under the first, or
	// remove it when refused.
	receiving atomic.Bool
	// sending counts the sends of the VM's saved guest under way
	// (OpenSaved); it is raised only by the actor, which starts no
	// restore while it is above zero.
	sending atomic.Int32

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
	// reported holds the results of steps that had nothing to run (see
	// nothingToRun), handled after the message that entered them.
	reported []workResult
	// answer is the reply to the command of this turn of the actor loop,
	// sent as the turn's last act (see run).
	answer func()
	// lastWork is closed when the most recently spawned ordered work has
	// finished. Ordered work waits for its predecessor, so a VM's hooks run
	// one at a time and in the order of the states entered.
	lastWork chan struct{}
	stopOpts StopOptions
	deadline time.Time // when a graceful stop in progress turns forced
	// stopForce marks the stop in progress as forced.
	stopForce bool
	// vncAuto is the VM's random VNC password, once made up.
	vncAuto string
	// saved is the record last written; saveErr why the current one could
	// not be, and retryAt when the next try is due.
	saved      []byte
	saveErr    error
	retryAt    time.Time
	retryDelay time.Duration
	// recSeq is the version of the record last written (Record.Seq);
	// kept is set while a copy of an unsaved record may lie in the run
	// directory.
	recSeq uint64
	kept   bool
	// recovery is the record being recovered from after a daemon restart;
	// recovering is set from the actor's creation from a record until the
	// hypervisor was found again or found gone, so that the status never
	// shows a VM up that is not yet taken over.
	recovery   *recovering
	recovering bool
	// waitingFor lists the VMs a start waits for; cancelDeps ends that
	// wait.
	waitingFor []string
	cancelDeps context.CancelFunc
	// orphan notes a hypervisor process found without a record.
	orphan string
	// resetAsked marks the running instance as reset by a user: its next
	// reboot-like exit is the reset, not the guest's doing.
	resetAsked hypervisor.Instance
	// access relays the guest's console and VNC (console.go, vnc.go).
	access guestAccess
	// guestSave is the guest state a suspend left (suspend.go), until a
	// restore has used it or it is discarded.
	guestSave *SavedState
	// suspendPaused: the suspend in progress began in paused, so a save
	// that fails leaves the guest paused.
	suspendPaused bool
}

// opReset is the reset command; it changes no state by itself.
const opReset statemachine.Event = "reset"

// command is a request from a user.
type command struct {
	op      statemachine.Event
	stop    StopOptions
	suspend SuspendOptions
	// received is the saved guest a receive put in the state directory.
	received *received
	reason   string // why, when not a user's request (autostart)
	reply    chan error
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
	// hook is the state whose hook the work ran, when it ran one alone.
	hook statemachine.State
	// saved is what a suspend saved; restored marks an instance launched
	// from a saved guest.
	saved    *SavedState
	restored bool
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
		inbox:   make(chan message, 16),
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
func (v *vm) send(ctx context.Context, msg message) error {
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
		retry, stopRetry := v.retryC()
		select {
		case <-ctx.Done():
			stopRetry()
			v.lastSave()
			return
		case msg := <-v.inbox:
			if ctx.Err() != nil {
				// The daemon is exiting. Both cases of the select were
				// ready; a result now is most likely work cut short by
				// the exit, which must not count as its failure. The
				// journal and the record tell the next daemon where
				// the VM stands.
				stopRetry()
				v.lastSave()
				return
			}
			msg.deliver(ctx, v)
		case <-exited:
			v.onExit(ctx)
		case <-retry:
		}
		for len(v.reported) > 0 {
			r := v.reported[0]
			v.reported = v.reported[1:]
			r.deliver(ctx, v)
		}
		stopRetry()
		if !v.dropped {
			_ = v.save()
		}
		v.publishStatus()
		// The answer goes last, after the record and the status: whoever
		// asked, and whatever they do next, finds the VM as the command
		// and the steps it went through at once left it. Last also for
		// speed: the asker is the goroutine woken most recently, so it
		// runs as soon as the actor waits again, ahead of the launch and
		// the followers the command set off. Answered before them, it
		// waited behind them, about 4 ms a request in a start of 1,000.
		if v.answer != nil {
			v.answer()
			v.answer = nil
		}
	}
}

// lastSave tries once more to write a record that could not be written,
// as the daemon exits: the next daemon goes by it.
func (v *vm) lastSave() {
	if v.saveErr != nil {
		_ = v.save()
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

// message is one kind of news for the actor; each kind says what the
// actor does with it.
type message interface {
	deliver(ctx context.Context, v *vm)
}

func (c command) deliver(ctx context.Context, v *vm) {
	err := v.onCommand(ctx, c)
	v.answer = func() { c.reply <- err }
}

func (r workResult) deliver(ctx context.Context, v *vm)   { v.onWork(ctx, r) }
func (u configUpdate) deliver(ctx context.Context, v *vm) { v.onConfig(u) }
func (r recovering) deliver(ctx context.Context, v *vm)   { v.onRecover(ctx, r) }
func (i inspect) deliver(ctx context.Context, v *vm) {
	i.fn()
	close(i.done)
}

// fire moves the machine and performs what the new state stands for. An
// event the table refuses is logged: the actor asked for a move its own
// state does not allow, which is a fault to be seen, not ignored.
func (v *vm) fire(ctx context.Context, e statemachine.Event, reason string) error {
	tr, err := v.m.Fire(e, reason)
	if err != nil {
		v.log.Printf("event %s refused in state %s: %v", e, v.m.State(), err)
		v.sup.logf("%s: event %s refused in state %s: %v", v.name, e, v.m.State(), err)
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
	if tr.To == statemachine.Stopped || tr.To == statemachine.Failed {
		// Before the status goes out, so that it never shows a VM at
		// rest that still wants to run or has a hypervisor. Their hook
		// moves nothing, but the VM has settled only once it has
		// finished.
		v.desired, v.inst, v.hook = statemachine.Stopped, nil, tr.To
	}
	if tr.To == statemachine.Suspended {
		// At rest too. A host shutdown's suspend keeps the VM wanted
		// running; otherwise it is wanted where it is (also after a stop
		// during its restore, or a failreset after a failed one).
		v.inst, v.hook = nil, tr.To
		if v.desired != statemachine.Running {
			v.desired = statemachine.Suspended
		}
	}
	// Status first: whoever reacts to the event must find it up to date.
	v.publishStatus()
	v.sup.bus.Publish(Event{Time: tr.Time, Kind: KindTransition, VM: v.name, Event: tr.Event,
		From: tr.From, To: tr.To, Reason: tr.Reason})

	behaviours[tr.To].enter(v, ctx, tr)
	if v.dropped {
		return
	}
	// A stop asked for while the VM was busy takes effect here, at the
	// first state that can stop.
	if v.desired == statemachine.Stopped && v.m.Can(statemachine.Stop) {
		v.fire(ctx, statemachine.Stop, "stop requested")
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
	if v.nothingToRun(ctx, st) {
		// As if work had run and reported at once; no record first, as
		// no work starts (the step the chain stops at saves one).
		v.gen++
		v.reported = append(v.reported, workResult{gen: v.gen, step: stepHook, hook: st, ok: true, skipped: true})
		return
	}
	v.spawn(ctx, stepHook, v.hookWork(st, tr))
}

// nothingToRun reports whether the work of a step of the start (its hook
// and the network set-up) is known to do nothing: no network to set up,
// no hook file, no work of an earlier step still running (work runs in
// order), no config pending (whose directory may have moved). The step
// then needs no goroutine and no record of its own: a thousand VMs
// without hooks start with a third of the records and goroutines.
func (v *vm) nothingToRun(ctx context.Context, st statemachine.State) bool {
	if ctx.Err() != nil || v.cfg == nil || v.pending != nil {
		return false
	}
	switch st {
	case statemachine.StartNetwork:
		if len(v.cfg.net.NICs) > 0 {
			return false
		}
	case statemachine.StartStorage, statemachine.Running:
	default:
		return false
	}
	if v.lastWork != nil {
		select {
		case <-v.lastWork:
		default:
			return false
		}
	}
	if v.cfg.scriptPath == "" {
		return true
	}
	path, err := hooks.Find(v.cfg.scriptPath, string(st), v.sup.strictHooks.Enabled())
	return err == nil && path == ""
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
	if r.ok {
		v.hook = ""
		v.publishStatus()
	}
	v.hookEvent(st, r.ok, r.reason, r.skipped)
}

// spawn runs work in its own goroutine; its result comes back to the actor
// tagged with a new generation, which makes results of older work stale.
// Work that runs hooks starts only when the work spawned before it has
// finished: a stop that arrives while the running hook runs does not start
// the stopping hook beside it.
func (v *vm) spawn(ctx context.Context, step string, work func(context.Context) workResult) {
	// The record comes first: no work starts that the record on disk does
	// not yet account for.
	_ = v.save()
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

// hookWork runs the hook of state st, with the daemon's own network work
// around it (network.go).
func (v *vm) hookWork(st statemachine.State, tr statemachine.Transition) func(context.Context) workResult {
	call := v.hookCall(st, tr)
	var spec vmnet.Spec
	if v.cfg != nil {
		spec = v.cfg.net
	}
	return func(ctx context.Context) workResult {
		if r, failed := v.netBefore(ctx, st, spec, &call); failed {
			return r
		}
		o := v.sup.runHook(ctx, call, v.log)
		r := workResult{hook: st, ok: o.ok, reason: o.reason, skipped: o.skipped}
		return v.netAfter(ctx, st, r)
	}
}

// hookEvent tells the event stream that the hook of st has finished. Safe
// from any goroutine: work that runs a hook in the middle of a step
// (stopping, restarting) says so as soon as the hook ends.
func (v *vm) hookEvent(st statemachine.State, ok bool, reason string, skipped bool) {
	if !ok && reason == "" {
		reason = "hook " + string(st) + " failed"
	}
	if ok {
		reason = ""
	}
	v.sup.bus.Publish(Event{Time: v.sup.now(), Kind: KindHook, VM: v.name, To: st, Reason: reason, Skipped: skipped})
}

// notifyFinished handles the end of a hook whose outcome moves nothing
// (stopped, failed): a failure is logged, and the VM no longer waits for
// it.
func (v *vm) notifyFinished(r workResult) {
	if !r.ok {
		v.log.Printf("%s", r.reason)
	}
	if r.hook == "" {
		return
	}
	if r.gen == v.gen && v.hook == r.hook && v.m.State() == r.hook {
		v.hook = ""
		v.publishStatus()
	}
	v.hookEvent(r.hook, r.ok, r.reason, r.skipped)
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
	if r.step == stepNotify {
		v.notifyFinished(r)
		return
	}
	if r.gen != v.gen {
		return
	}
	if r.step == stepHook {
		v.hookFinished(r)
	}
	behaviours[v.m.State()].result(v, ctx, r)
}

func (v *vm) setInstance(inst hypervisor.Instance) {
	v.inst = inst
}

// launch starts the hypervisor for settings s.
func (v *vm) launch(ctx context.Context, s *settings, vncPassword string, restore bool) (hypervisor.Instance, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: %s has no valid config to launch from", ErrInvalidConfig, v.name)
	}
	drv := v.sup.drivers[s.driver]
	if drv == nil {
		return nil, fmt.Errorf("no %q driver in this daemon (hypervisor = %s in %s)", s.driver, s.driver, s.file)
	}
	spec := v.specFor(s)
	spec.Output = v.log.Writer(s.driver)
	spec.Console = v.consoleOutput()
	if o, ok := spec.Options.(*qemu.Options); ok && o != nil && s.vncPasswordAuto {
		c := *o // shared with the settings, which stay as loaded
		c.VNCPassword = vncPassword
		spec.Options = &c
	}
	if inst, err := v.adoptLeftover(ctx, drv, s.driver, spec); inst != nil || err != nil {
		return inst, err
	}
	if restore {
		return v.restoreLaunch(ctx, drv, spec)
	}
	return drv.Start(ctx, spec)
}

// adoptLeftover looks, before a launch, for a live process of the VM that
// its run directory's handle names (one the record lost track of: a daemon
// that died before it could save the handle, or a record that could not be
// written). Such a process is adopted, never doubled; one that lives but
// cannot be adopted stops the launch.
func (v *vm) adoptLeftover(ctx context.Context, drv hypervisor.Driver, driver string, spec hypervisor.Spec) (hypervisor.Instance, error) {
	h, err := hypervisor.ReadHandleFile(spec.RunDir)
	if err != nil || h.Driver != driver || h.PID < 0 || h.PID == 0 && h.Cgroup == "" {
		return nil, nil
	}
	if h.PID == 0 {
		// A launch into a cgroup whose process was never recorded: the
		// driver ends what runs there.
		_, err := drv.Recover(ctx, spec, h)
		if errors.Is(err, hypervisor.ErrGone) {
			v.log.Printf("%v", err)
			return nil, nil
		}
		return nil, fmt.Errorf("a launch of this VM that was never recorded could not be ended (named by %s): %v; nothing was launched beside it: end what runs in cgroup %s by hand, then start again",
			filepath.Join(spec.RunDir, hypervisor.HandleFile), err, h.Cgroup)
	}
	if st, err := process.StartTimeOf(h.PID); err != nil || st != h.StartTime {
		return nil, nil // gone: its pid is free or taken by another process
	}
	inst, err := drv.Recover(ctx, spec, h)
	if errors.Is(err, hypervisor.ErrGone) {
		return nil, nil // it ended (a zombie still waiting to be reaped)
	}
	if err != nil {
		return nil, fmt.Errorf("%s pid %d of this VM still runs (named by %s) but could not be adopted: %v; nothing was launched beside it: stop it by hand, then start again",
			h.Driver, h.PID, filepath.Join(spec.RunDir, hypervisor.HandleFile), err)
	}
	what := fmt.Sprintf("found %s pid %d of this VM still running; adopted it instead of launching another", h.Driver, h.PID)
	v.log.Printf("%s", what)
	v.sup.bus.Publish(Event{Kind: KindAdopted, VM: v.name, Reason: what})
	return inst, nil
}

// startLaunch launches the hypervisor once the intent is on disk: a daemon
// that dies after the launch must find the record that sends it looking
// for the process. A record that cannot be written fails the launch, and
// nothing is launched.
func (v *vm) startLaunch(ctx context.Context) {
	// A password made up now is in the record before QEMU has it.
	pw := v.vncPasswordFor(v.cfg, true)
	if err := v.save(); err != nil {
		v.onWork(ctx, workResult{gen: v.gen, step: stepLaunch, reason: "state not saved, so nothing was launched: " + err.Error()})
		return
	}
	s := v.cfg
	v.showVNCPassword(pw)
	// A start of a suspended VM carries on with its saved guest; a
	// relaunch (restarting) never has one.
	restore := v.guestSave != nil && v.m.State() == statemachine.StartStorage
	v.spawn(ctx, stepLaunch, func(ctx context.Context) workResult {
		inst, err := v.launch(ctx, s, pw, restore)
		if err != nil {
			return workResult{reason: err.Error()}
		}
		return workResult{ok: true, inst: inst, restored: restore}
	})
}

// restartWork stops the old hypervisor when it still runs (a restart asked
// for by a user) and runs the restarting hook; the launch follows as a
// step of its own.
func (v *vm) restartWork(old hypervisor.Instance, tr statemachine.Transition) func(context.Context) workResult {
	call := v.hookCall(statemachine.Restarting, tr)
	timeout := v.cfg.stopWait()
	return func(ctx context.Context) workResult {
		if old != nil {
			if err := v.stopInstance(ctx, old, false, timeout, nil); err != nil {
				return workResult{reason: err.Error()}
			}
		}
		o := v.sup.runHook(ctx, call, v.log)
		if ctx.Err() == nil {
			v.hookEvent(statemachine.Restarting, o.ok, o.reason, o.skipped)
		}
		return workResult{ok: o.ok, reason: o.reason}
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
	if timeout <= 0 {
		timeout = v.cfg.stopWait()
	}
	if inst != nil && !opts.Force {
		// Persisted (spawn saves the record), so that a daemon restart
		// re-arms it.
		v.deadline = v.sup.now().Add(timeout)
	}
	v.stopForce = inst != nil && opts.Force
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
			if ctx.Err() == nil {
				v.hookEvent(statemachine.Stopping, o.ok, o.reason, o.skipped)
			}
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
	v.log.Printf("hypervisor exited: %s%s", ex, statusSuffix(ex))
	if wasReset && ex.Reason == hypervisor.ExitReboot && v.desired == statemachine.Running {
		// The reset a user asked for: relaunch like a restart, outside
		// the budget.
		v.fire(ctx, statemachine.Restart, "reset requested")
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
		v.fire(ctx, statemachine.Exited, why)
		return
	}
	policy := PolicyStop
	if v.cfg != nil {
		policy = v.cfg.policyFor(ex.Reason)
	}
	switch policy {
	case PolicyRestart:
		v.fire(ctx, statemachine.AutoRestart, why)
		if v.m.State() == statemachine.Stopping {
			v.desired = statemachine.Stopped // the budget is spent
		}
	case PolicyFail:
		v.m.MarkFailed(why)
		v.desired = statemachine.Stopped
		v.fire(ctx, statemachine.Exited, why)
	default:
		v.desired = statemachine.Stopped
		v.fire(ctx, statemachine.Exited, why)
	}
}

// statusSuffix gives an exit's status and signal for the log, unless its
// detail says them already ("exit status 100").
func statusSuffix(ex hypervisor.Exit) string {
	if strings.Contains(ex.Detail, "status") || (ex.Signal != "" && strings.Contains(ex.Detail, ex.Signal)) {
		return ""
	}
	return fmt.Sprintf(" (status %d%s)", ex.Code, signalSuffix(ex.Signal))
}

func signalSuffix(sig string) string {
	if sig == "" {
		return ""
	}
	return ", signal " + sig
}

// stopWaiting ends a wait for dependencies, if one runs.
func (v *vm) stopWaiting() {
	if v.cancelDeps != nil {
		v.cancelDeps()
		v.cancelDeps = nil
	}
}

// onDeps handles the outcome of waiting for the VMs this one depends on.
func (v *vm) onDeps(ctx context.Context, r workResult) {
	v.waitingFor = nil
	v.stopWaiting()
	if v.desired != statemachine.Running {
		return
	}
	if !r.ok {
		v.desired = statemachine.Stopped
		v.fire(ctx, statemachine.Fail, r.reason)
		return
	}
	v.fire(ctx, statemachine.Start, "dependencies running")
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
		if st == statemachine.Stopped || st == statemachine.Failed || st == statemachine.Suspended {
			if v.guestSave != nil {
				v.log.Printf("config directory removed; its saved guest state stays in %s", v.sup.savePath(v.name))
			}
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
	if st == statemachine.Stopped || st == statemachine.Failed || st == statemachine.Suspended || v.cfg == nil {
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
		WaitingFor:  v.waitingFor,
		Recovering:  v.recovering,
		Saved:       v.guestSave,
	}
	if v.saveErr != nil {
		s.RecordError = v.saveErr.Error()
	}
	if v.sup.net != nil {
		if ns := v.sup.net.Current(v.name); ns != nil {
			s.Networks = ns.Links
		}
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
		s.OnHostShutdown = c.onHostShutdown
	}
	b := v.m.Budget()
	s.restartTimes, s.window = b.Times(), b.Window
	v.status.Store(s)
	v.syncAccess(s)
}
