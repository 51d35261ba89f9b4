package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// behaviour is what the actor does in one state, all in one place: the
// transition table (statemachine) says where a VM may go; this says what
// each state does once there.
type behaviour struct {
	// enter starts the state's work (the transition is already
	// published and recorded).
	enter func(v *vm, ctx context.Context, tr statemachine.Transition)
	// result handles the report of the work the state started.
	result func(v *vm, ctx context.Context, r workResult)
	// recover continues the state after a daemon restart found the VM in
	// it, with the re-adopted hypervisor, or nil when none runs.
	recover func(v *vm, ctx context.Context, inst hypervisor.Instance, rec recovering)
	// journaled continues after the hook journal told what became of the
	// state's hook under the previous daemon (r.rerun: it must run
	// again; otherwise r is its outcome).
	journaled func(v *vm, ctx context.Context, r workResult, tr statemachine.Transition)
}

// behaviours holds every state's behaviour. It is filled in init because
// the behaviours call back into the actor, which looks them up.
var behaviours map[statemachine.State]behaviour

func init() {
	behaviours = map[statemachine.State]behaviour{
		// stopped: at rest. Its hook tells that the VM is down; a start
		// that waits for its dependencies reports here.
		statemachine.Stopped: {
			enter:  enterResting,
			result: restingResult,
			recover: func(v *vm, ctx context.Context, _ hypervisor.Instance, rec recovering) {
				v.resumeNotice(ctx, statemachine.Stopped)
				if rec.autostart || rec.rec.Desired == statemachine.Running {
					v.desired = statemachine.Stopped // the start below sets it
					reason := "desired state restored"
					if rec.autostart {
						reason = "autostart"
					}
					if err := v.onCommand(ctx, command{op: statemachine.Start, reason: reason}); err != nil {
						v.log.Printf("%s: %v", reason, err)
					}
				}
			},
		},

		// start_network, start_storage: the setup hooks, then the launch.
		statemachine.StartNetwork: {
			enter:     enterHook,
			result:    func(v *vm, ctx context.Context, r workResult) { startStepDone(v, ctx, r) },
			recover:   recoverHookStep,
			journaled: journaledHook,
		},
		statemachine.StartStorage: {
			enter: enterHook,
			result: func(v *vm, ctx context.Context, r workResult) {
				switch {
				case r.step == stepHook:
					if !startStepDone(v, ctx, r) {
						v.startLaunch(ctx)
					}
				case !r.ok:
					v.m.MarkFailed("launch failed: " + r.reason)
					v.fire(ctx, statemachine.Abort, "launch failed: "+r.reason)
				case r.restored:
					v.setInstance(r.inst)
					v.restored()
					v.fire(ctx, statemachine.Done, fmt.Sprintf("%s restored from the saved guest state, pid %d", v.cfg.driver, r.inst.Handle().PID))
				default:
					v.setInstance(r.inst)
					v.fire(ctx, statemachine.Done, fmt.Sprintf("%s started, pid %d", v.cfg.driver, r.inst.Handle().PID))
				}
			},
			recover:   recoverLaunchStep,
			journaled: journaledHook,
		},

		// running, paused: the guest runs (or is frozen); their hooks run
		// once on entry, and a VM is up once its running hook finished.
		// An exit of the hypervisor is handled by onExit.
		statemachine.Running: {
			enter:     enterHook,
			result:    failOnly,
			recover:   recoverRunning,
			journaled: journaledHook,
		},
		statemachine.Paused: {
			enter:     enterHook,
			result:    failOnly,
			recover:   recoverRunning,
			journaled: journaledHook,
		},

		// restarting: the old hypervisor goes (a user's restart), the
		// restarting hook runs, then the launch; restarted follows.
		statemachine.Restarting: {
			enter: func(v *vm, ctx context.Context, tr statemachine.Transition) {
				old := v.inst
				if old != nil && isDone(old) {
					old = nil
				}
				v.inst = nil
				v.spawn(ctx, stepRestart, v.restartWork(old, tr))
			},
			result: func(v *vm, ctx context.Context, r workResult) {
				switch {
				case r.step == stepRestart && !r.ok:
					v.fire(ctx, statemachine.Fail, r.reason)
				case r.step == stepRestart:
					v.startLaunch(ctx)
				case !r.ok:
					v.fire(ctx, statemachine.Fail, "relaunch failed: "+r.reason)
				default:
					v.setInstance(r.inst)
					v.fire(ctx, statemachine.Done, fmt.Sprintf("%s relaunched, pid %d", v.cfg.driver, r.inst.Handle().PID))
				}
			},
			recover: recoverLaunchStep,
			journaled: func(v *vm, ctx context.Context, r workResult, tr statemachine.Transition) {
				switch {
				case r.rerun:
					v.spawn(ctx, stepRestart, v.restartWork(nil, tr))
				case !r.ok:
					v.fire(ctx, statemachine.Fail, r.reason)
				default:
					v.startLaunch(ctx)
				}
			},
		},
		statemachine.Restarted: {
			enter:  enterHook,
			result: doneOrFail,
			recover: func(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
				if inst == nil {
					v.crashedWhileDown(ctx)
					return
				}
				v.setInstance(inst)
				v.fire(ctx, statemachine.Done, "")
			},
			journaled: journaledHook,
		},

		// stopping: the stopping hook, then the guest is asked to power
		// off and forced after the deadline.
		statemachine.Stopping: {
			enter: func(v *vm, ctx context.Context, tr statemachine.Transition) { v.startStop(ctx, tr, nil) },
			result: func(v *vm, ctx context.Context, r workResult) {
				if v.inst != nil {
					if ex, ok := v.inst.Exit(); ok {
						v.lastExit = &ex
					}
				}
				v.inst = nil
				v.deadline, v.stopForce = time.Time{}, false
				doneOrFail(v, ctx, r)
			},
			recover: func(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
				v.inst = inst
				v.rearmStop(inst)
				v.spawn(ctx, stepJournal, v.journalWork(statemachine.Stopping))
			},
			journaled: func(v *vm, ctx context.Context, r workResult, tr statemachine.Transition) {
				if r.rerun {
					v.startStop(ctx, tr, nil)
				} else {
					v.startStop(ctx, tr, &hookDone{ok: r.ok, reason: r.reason})
				}
			},
		},

		// stop_storage, stop_network: the teardown hooks.
		statemachine.StopStorage: {
			enter:     enterHook,
			result:    doneOrFail,
			recover:   recoverHookStep,
			journaled: journaledHook,
		},
		statemachine.StopNetwork: {
			enter:     enterHook,
			result:    doneOrFail,
			recover:   recoverHookStep,
			journaled: journaledHook,
		},

		// suspending: the suspending hook, then the guest is saved and
		// the hypervisor ends; the teardown hooks follow.
		statemachine.Suspending: {
			enter:   enterSuspending,
			result:  suspendResult,
			recover: recoverSuspending,
		},

		// suspended: at rest, the guest saved. Like stopped, a start
		// may wait for dependencies here, and a start the user wanted
		// (a host shutdown's suspend) is made again after a restart.
		statemachine.Suspended: {
			enter:  enterResting,
			result: restingResult,
			recover: func(v *vm, ctx context.Context, _ hypervisor.Instance, rec recovering) {
				v.resumeNotice(ctx, statemachine.Suspended)
				if rec.autostart || rec.rec.Desired == statemachine.Running {
					reason := "desired state restored"
					if rec.autostart {
						reason = "autostart"
					}
					v.desired = statemachine.Suspended // the start below sets it
					if err := v.onCommand(ctx, command{op: statemachine.Start, reason: reason}); err != nil {
						v.log.Printf("%s: %v", reason, err)
					}
				}
			},
		},

		// failed: failure mode, until failreset. It survives daemon
		// restarts.
		statemachine.Failed: {
			enter:  enterResting,
			result: func(*vm, context.Context, workResult) {},
			recover: func(v *vm, ctx context.Context, _ hypervisor.Instance, _ recovering) {
				v.resumeNotice(ctx, statemachine.Failed)
			},
		},
	}
}

// ---- shared behaviours ----

// enterHook: the state's work is its hook alone, which the VM waits for.
func enterHook(v *vm, ctx context.Context, tr statemachine.Transition) {
	v.runStateHook(ctx, tr.To, tr)
}

// enterResting: stopped and failed. Their hook's outcome changes nothing,
// but the VM has settled only once it finished: stop -w and the stop-all
// waves wait for it. A config waiting for the next start is put in force,
// and a VM whose directory went away is dropped.
func enterResting(v *vm, ctx context.Context, tr statemachine.Transition) {
	// desired, inst and hook are set in enter, before the status goes
	// out.
	v.spawn(ctx, stepNotify, v.hookWork(tr.To, tr))
	v.applyPending()
	if v.removed {
		v.log.Printf("config directory removed: dropping the VM now that it is %s", tr.To)
		v.dropped = true
		v.sup.forget(v)
	}
}

// doneOrFail moves on when the work succeeded, to the failure path when
// not.
func doneOrFail(v *vm, ctx context.Context, r workResult) {
	if !r.ok {
		v.fire(ctx, statemachine.Fail, r.reason)
		return
	}
	v.fire(ctx, statemachine.Done, r.reason)
}

// failOnly: a failed hook of a state that otherwise stays (running,
// paused) starts the failure path.
func failOnly(v *vm, ctx context.Context, r workResult) {
	if !r.ok {
		v.fire(ctx, statemachine.Fail, r.reason)
	}
}

// startStepDone handles a setup hook's outcome: a failure or a stop asked
// for meanwhile ends the start (it returns true); otherwise the start goes
// on, to the next state for start_network, to the launch for
// start_storage.
func startStepDone(v *vm, ctx context.Context, r workResult) (ended bool) {
	switch {
	case !r.ok:
		v.fire(ctx, statemachine.Fail, r.reason)
	case v.desired == statemachine.Stopped:
		v.fire(ctx, statemachine.Abort, "stop requested while starting")
	case v.m.State() == statemachine.StartNetwork:
		v.fire(ctx, statemachine.Done, "")
	default:
		return false
	}
	return true
}

// recoverHookStep: a daemon restart in the middle of a hook step. No
// hypervisor should run here; one found anyway is killed. The journal
// tells whether the hook finished.
func recoverHookStep(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
	st := v.m.State()
	if inst != nil {
		_ = inst.Kill()
	}
	v.hook = st
	v.spawn(ctx, stepJournal, v.journalWork(st))
}

// recoverLaunchStep: start_storage and restarting end with a launch; the
// daemon may have gone down after it (the instance is the one launched),
// or before (the journal tells what became of the hook).
func recoverLaunchStep(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
	st := v.m.State()
	if inst != nil {
		v.setInstance(inst)
		v.fire(ctx, statemachine.Done, "re-adopted after a daemon restart")
		return
	}
	if hookStep(st) {
		v.hook = st
	}
	v.spawn(ctx, stepJournal, v.journalWork(st))
}

// recoverRunning: the guest ran when the daemon went down. Re-adopted, its
// state's hook may not have finished (or started): the journal says. Gone,
// it ended while the daemon was down.
func recoverRunning(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
	st := v.m.State()
	if inst == nil {
		v.crashedWhileDown(ctx)
		return
	}
	v.setInstance(inst)
	if v.journal(st).pid != "" && v.cfg != nil && v.cfg.scriptPath != "" {
		v.hook = st
		v.spawn(ctx, stepJournal, v.journalWork(st))
	}
}

// journaledHook continues a hook step from its journal: the hook runs
// again when it did not finish, or its outcome is taken as if it had
// just reported.
func journaledHook(v *vm, ctx context.Context, r workResult, tr statemachine.Transition) {
	if r.rerun {
		v.runStateHook(ctx, tr.To, tr)
		return
	}
	v.onWork(ctx, workResult{gen: v.gen, step: stepHook, ok: r.ok, reason: r.reason})
}

// crashedWhileDown handles a guest found gone after a daemon restart: it
// ended while no daemon watched, so how is not known, and it counts as a
// crash.
func (v *vm) crashedWhileDown(ctx context.Context) {
	v.lastExit = &hypervisor.Exit{Reason: hypervisor.ExitCrash, Code: -1, Time: v.sup.now(), StatusUnknown: true,
		Detail: "exit status unknown: the hypervisor ended while the daemon was down"}
	v.inst = nil
	v.afterExit(ctx, *v.lastExit)
}

// rearmStop sets up the rest of a stop the previous daemon began: a forced
// one goes on forcing; a graceful one gets the time left before its
// recorded deadline, or is forced when that has passed.
func (v *vm) rearmStop(inst hypervisor.Instance) {
	switch {
	case inst == nil:
	case v.stopForce:
		v.stopOpts = StopOptions{Force: true}
		v.log.Printf("a forced stop was in progress; forcing")
	case !v.deadline.IsZero():
		if left := v.deadline.Sub(v.sup.now()); left <= 0 {
			v.stopOpts = StopOptions{Force: true}
			v.log.Printf("stop deadline passed while the daemon was down; forcing")
		} else {
			v.stopOpts = StopOptions{Timeout: left}
		}
	}
}

// restingResult handles work results at rest (stopped, suspended): only
// the wait for dependencies of a start reports there.
func restingResult(v *vm, ctx context.Context, r workResult) {
	if r.step == stepDeps {
		v.onDeps(ctx, r)
	}
}
