package supervisor

import (
	"context"
	"fmt"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// commandHandlers hold what the actor does with each user command. A
// command is checked against the VM's state here; the moves it causes go
// through the transition table like any other.
var commandHandlers map[statemachine.Event]func(v *vm, ctx context.Context, c command) error

func init() {
	commandHandlers = map[statemachine.Event]func(v *vm, ctx context.Context, c command) error{
		statemachine.Start:     (*vm).cmdStart,
		statemachine.Stop:      (*vm).cmdStop,
		statemachine.Restart:   (*vm).cmdRestart,
		statemachine.Pause:     (*vm).cmdPause,
		statemachine.Unpause:   (*vm).cmdPause,
		opReset:                (*vm).cmdReset,
		statemachine.FailReset: (*vm).cmdFailReset,
		statemachine.Suspend:   (*vm).cmdSuspend,
		statemachine.Discard:   (*vm).cmdDiscard,
		opReceive:              (*vm).cmdReceive,
	}
}

func (v *vm) onCommand(ctx context.Context, c command) error {
	h, ok := commandHandlers[c.op]
	if !ok {
		return fmt.Errorf("unknown command %q", c.op)
	}
	return h(v, ctx, c)
}

func (v *vm) notAllowed(c command) error {
	return &statemachine.NotAllowedError{VM: v.name, Event: c.op, State: v.m.State()}
}

// cmdStart starts a stopped VM, after the VMs it depends on are up.
func (v *vm) cmdStart(ctx context.Context, c command) error {
	if v.cfg == nil {
		return fmt.Errorf("%w: %s has no valid config: %s", ErrInvalidConfig, v.name, v.configErr)
	}
	if st := v.m.State(); st != statemachine.Stopped && st != statemachine.Suspended {
		return v.notAllowed(c)
	}
	if len(v.waitingFor) > 0 {
		return nil // already waiting for its dependencies
	}
	if v.m.State() == statemachine.Suspended && v.sending.Load() > 0 {
		return fmt.Errorf("%w: %s's saved guest is being sent to another host; started here too, the guest would run twice: wait until 'vmstatedctl send' has ended (it stops the VM here once the stream is out; cut short, it leaves it suspended)", statemachine.ErrNotAllowed, v.name)
	}
	v.applyPending()
	v.desired = statemachine.Running
	reason := c.reason
	if reason == "" {
		reason = "start requested"
	}
	if len(v.cfg.depends) == 0 {
		return v.fire(ctx, statemachine.Start, reason)
	}
	deps := v.cfg.depends
	v.waitingFor = deps
	// Its own context: a stop that cancels this start also stops the
	// waiting, before it starts a dependency nobody wants any more.
	dctx, cancel := context.WithCancel(ctx)
	v.cancelDeps = cancel
	v.spawn(ctx, stepDeps, func(context.Context) workResult {
		if err := v.sup.startDeps(dctx, v.name, deps); err != nil {
			return workResult{reason: err.Error()}
		}
		return workResult{ok: true}
	})
	return nil
}

// cmdStop stops a VM: at once where it can stop, at the end of its current
// step where it cannot yet.
func (v *vm) cmdStop(ctx context.Context, c command) error {
	switch st := v.m.State(); {
	case st == statemachine.Stopped && v.desired == statemachine.Running:
		// Waiting for dependencies: forget the start.
		v.desired = statemachine.Stopped
		v.waitingFor = nil
		v.stopWaiting()
		v.gen++
		v.lastReason = "start cancelled"
		return nil
	case st == statemachine.Stopping:
		if c.stop.Force && v.inst != nil {
			v.log.Printf("forced stop requested")
			// Recorded before the kill: a daemon that dies now is
			// followed by one that goes on forcing.
			v.stopForce = true
			_ = v.save()
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
		return v.notAllowed(c)
	}
	v.desired = statemachine.Stopped
	v.stopOpts = c.stop
	reason := "stop requested"
	if c.stop.Force {
		reason = "forced stop requested"
	}
	return v.fire(ctx, statemachine.Stop, reason)
}

// cmdRestart relaunches a running VM's hypervisor.
func (v *vm) cmdRestart(ctx context.Context, c command) error {
	if !v.m.Can(c.op) {
		return v.notAllowed(c)
	}
	v.desired = statemachine.Running
	return v.fire(ctx, statemachine.Restart, "restart requested")
}

// cmdPause freezes (Pause) or thaws (Unpause) the guest.
func (v *vm) cmdPause(ctx context.Context, c command) error {
	if !v.m.Can(c.op) {
		return v.notAllowed(c)
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
}

// cmdReset presses the guest's reset button. It changes no state by itself:
// the reboot-like exit it causes is taken for the reset, not the guest's
// doing (see onExit).
func (v *vm) cmdReset(ctx context.Context, c command) error {
	if v.inst == nil || !watchesExit(v.m.State()) {
		return v.notAllowed(c)
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
}

// cmdFailReset ends failure mode.
func (v *vm) cmdFailReset(ctx context.Context, c command) error {
	if !v.m.Can(c.op) {
		return v.notAllowed(c)
	}
	return v.fire(ctx, statemachine.FailReset, "failreset requested")
}
