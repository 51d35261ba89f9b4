package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/vmstated/vmstated/hooks"
	"github.com/vmstated/vmstated/statemachine"
)

// hookCall is everything needed to run one hook, captured by the actor so
// the work goroutine reads none of the actor's fields.
type hookCall struct {
	vm         string
	state      statemachine.State
	prev       statemachine.State
	reason     string
	scriptPath string
	dir        string
	timeout    time.Duration
	pid        int
	restarts   int
	scalars    map[string]string
	// journal names the files that let a later daemon learn this run's
	// outcome; empty when the daemon keeps no runtime directory.
	journal journal
}

func (v *vm) hookCall(st statemachine.State, tr statemachine.Transition) hookCall {
	c := hookCall{vm: v.name, state: st, prev: tr.From, reason: tr.Reason,
		restarts: v.m.Budget().Count(v.sup.now()), journal: v.journal(st)}
	if cfg := v.cfg; cfg != nil {
		c.scriptPath, c.dir, c.scalars = cfg.scriptPath, cfg.dir, cfg.scalars
		c.timeout = cfg.hookTimeoutFor(st)
	}
	if v.inst != nil && !isDone(v.inst) {
		c.pid = v.inst.Handle().PID
	}
	return c
}

// runHook runs the hook of c.state, if the VM has one, with its output in
// the VM's log. It returns whether the hook succeeded (a missing hook
// does) and, if not, why.
func (s *Supervisor) runHook(ctx context.Context, c hookCall, log *vmLog) (bool, string) {
	if c.scriptPath == "" {
		return true, ""
	}
	c.journal.begin()
	res := hooks.Run(ctx, hooks.Request{
		StatusFile: c.journal.status,
		Started:    c.journal.started,
		ScriptPath: c.scriptPath,
		Env: hooks.Env{
			Name:          c.vm,
			State:         string(c.state),
			PreviousState: string(c.prev),
			Reason:        c.reason,
			ConfigDir:     c.dir,
			PID:           c.pid,
			Restarts:      c.restarts,
			Config:        c.scalars,
		},
		Timeout: c.timeout,
		Grace:   s.hookGrace,
		// The runner tags each line with the hook's name itself.
		Output: log.Writer(""),
		Strict: s.strictHooks,
	})
	if res.Skipped {
		// No hook is a hook that succeeded, for a later daemon too.
		c.journal.skipped()
		return true, ""
	}
	if errors.Is(res.Err, hooks.ErrNoScriptDir) && c.scriptPath == c.dir {
		// The VM's own directory is gone: it was removed while the VM
		// ran. Its hooks went with it; the VM still has to stop cleanly.
		log.Printf("hook %s skipped: the VM's directory %s is gone", c.state, c.dir)
		return true, ""
	}
	if res.OK() {
		log.Printf("hook %s finished in %s", c.state, res.Duration.Round(time.Millisecond))
		return true, ""
	}
	return false, res.Reason()
}
