package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"os"
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
	// movedDir and movedScriptPath are where the VM's directory is now,
	// when a config waiting for the next start comes from another
	// directory (the directory was renamed while the VM ran).
	movedDir        string
	movedScriptPath string
	timeout         time.Duration
	pid             int
	restarts        int
	scalars         map[string]string
	// network describes what the daemon set up (VMSTATED_TAPS, ...).
	network map[string]string
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
		if p := v.pending; p != nil && p.dir != cfg.dir && cfg.scriptPath == cfg.dir && p.scriptPath == p.dir {
			c.movedDir, c.movedScriptPath = p.dir, p.scriptPath
		}
	}
	if v.inst != nil && !isDone(v.inst) {
		c.pid = v.inst.Handle().PID
	}
	return c
}

// hookOutcome is what became of a hook run: ok (a missing hook is ok and
// skipped), or why not.
type hookOutcome struct {
	ok      bool
	skipped bool
	reason  string
}

// draining returns the context a hook runs under: it ends hookDrain after
// ctx does, so that a daemon exit lets a hook that is nearly done finish
// (and the next daemon learn its status from the journal) rather than
// stopping it half-way, to be run again. The daemon's exit waits for it.
func (s *Supervisor) draining(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.hookDrain < 0 {
		return ctx, func() {}
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(s.hookDrain, cancel) })
	return hctx, func() {
		stop()
		cancel()
	}
}

// runHook runs the hook of c.state, if the VM has one, with its output in
// the VM's log.
func (s *Supervisor) runHook(ctx context.Context, c hookCall, log *vmLog) hookOutcome {
	if c.scriptPath == "" {
		return hookOutcome{ok: true, skipped: true}
	}
	if c.movedDir != "" {
		if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
			// The hooks that set the VM up moved with its directory;
			// the ones that tear it down must still run.
			log.Printf("hook %s: the VM's directory %s is now %s; running the hook from there", c.state, c.dir, c.movedDir)
			c.dir, c.scriptPath = c.movedDir, c.movedScriptPath
		}
	}
	if ctx.Err() != nil {
		// The daemon is exiting: start nothing new. The journal shows
		// the hook never ran, so the next daemon runs it.
		return hookOutcome{reason: "hook " + string(c.state) + " not run: the daemon is exiting"}
	}
	hctx, done := s.draining(ctx)
	defer done()
	s.hooksRunning.Add(1)
	defer s.hooksRunning.Add(-1)
	res := hooks.Run(hctx, hooks.Request{
		StatusFile: c.journal.status,
		// The journal is begun only for a hook that exists: its process
		// waits at the gate until this returns, so the files are in
		// place before it runs. A state without a hook leaves no files,
		// which a later daemon reads as "run it again": skipped again,
		// at the cost of a lookup, where a file per state and VM made
		// every start and stop of a thousand VMs wait on the disk.
		Started: func(pid int) {
			c.journal.begin()
			c.journal.started(pid)
		},
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
			Network:       c.network,
		},
		Timeout: c.timeout,
		Grace:   s.hookGrace,
		// The runner tags each line with the hook's name itself.
		Output: log.Writer(""),
		Strict: s.strictHooks,
	})
	if res.Skipped {
		return hookOutcome{ok: true, skipped: true}
	}
	if errors.Is(res.Err, hooks.ErrNoScriptDir) && c.scriptPath == c.dir {
		// The VM's own directory is gone: it was removed while the VM
		// ran. Its hooks went with it; the VM still has to stop cleanly.
		log.Printf("hook %s skipped: the VM's directory %s is gone", c.state, c.dir)
		return hookOutcome{ok: true, skipped: true}
	}
	if res.OK() {
		log.Printf("hook %s finished in %s", c.state, res.Duration.Round(time.Millisecond))
		return hookOutcome{ok: true}
	}
	return hookOutcome{reason: res.Reason()}
}
