package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/hooks"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/statemachine"
)

// A hook journal lets a daemon that restarts while a hook runs learn what
// became of it, so that no hook runs twice for one state entry and none is
// skipped. Hooks run in their own process group and survive the daemon;
// for each run the daemon keeps two files in the VM's runtime directory,
// named for the state and the time the state was entered (which the state
// record also holds):
//
//	hooks/<state>.<entered>.pid      the hook's pid and start time
//	hooks/<state>.<entered>.status   its exit status, written when it exits
//
// On recovery: a status file means the hook finished (its status is the
// outcome); a live process means it still runs (wait for it); neither
// means it never started or was killed, and it runs again.
type journal struct {
	pid, status string
	dir, state  string
}

// journal returns the journal of the hook run for st entered at the
// machine's current Since.
func (v *vm) journal(st statemachine.State) journal {
	if v.sup.runDir == "" {
		return journal{}
	}
	dir := filepath.Join(v.sup.runDir, v.name, "hooks")
	base := filepath.Join(dir, fmt.Sprintf("%s.%d", st, v.m.Since().UnixNano()))
	return journal{pid: base + ".pid", status: base + ".status", dir: dir, state: string(st)}
}

// begin clears the journal files of earlier runs of the same hook.
func (j journal) begin() {
	if j.dir == "" {
		return
	}
	_ = os.MkdirAll(j.dir, 0o700)
	old, _ := filepath.Glob(filepath.Join(j.dir, j.state+".*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
}

// started records the hook's process.
func (j journal) started(pid int) {
	if j.pid == "" {
		return
	}
	st, err := process.StartTimeOf(pid)
	if err != nil {
		return
	}
	// Whole or not at all: a torn pid file would make the next daemon run
	// the hook again beside the one still running.
	_ = atomicfile.Write(j.pid, []byte(fmt.Sprintf("%d %d\n", pid, st)), atomicfile.Options{})
}

// outcome is what a journal says of a hook run.
type outcome int

const (
	outcomeNone outcome = iota // not started, or killed: run it again
	outcomeDone                // finished; see code
)

// sigpipe is the status of a hook that died writing to the daemon that had
// gone away: it did not finish its work, so it runs again.
const sigpipe = 128 + int(syscall.SIGPIPE)

// settle finds out what became of the hook run, waiting for it if it still
// runs (up to timeout from when it started; then its process group is
// killed). It returns outcomeNone when the hook must run again.
func (j journal) settle(ctx context.Context, timeout time.Duration) (outcome, int) {
	if j.status == "" {
		return outcomeNone, 0
	}
	if code, ok := hooks.ReadStatus(j.status); ok {
		return finished(code)
	}
	b, err := os.ReadFile(j.pid)
	if err != nil {
		return outcomeNone, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return outcomeNone, 0
	}
	pid, _ := strconv.Atoi(f[0])
	start, _ := strconv.ParseUint(f[1], 10, 64)
	p, err := process.Attach(pid, start)
	if err != nil {
		// Gone: it finished after all (look again) or was killed.
		if code, ok := hooks.ReadStatus(j.status); ok {
			return finished(code)
		}
		return outcomeNone, 0
	}
	left := timeout
	if fi, err := os.Stat(j.pid); err == nil {
		left = timeout - time.Since(fi.ModTime())
	}
	t := time.NewTimer(max(left, 0))
	defer t.Stop()
	select {
	case <-p.Done():
	case <-t.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Done()
	case <-ctx.Done():
		return outcomeNone, 0
	}
	if code, ok := hooks.ReadStatus(j.status); ok {
		return finished(code)
	}
	return outcomeNone, 0
}

func finished(code int) (outcome, int) {
	if code == sigpipe {
		return outcomeNone, 0
	}
	return outcomeDone, code
}

// journalWork settles the hook run of state st after a daemon restart and
// reports it like the run itself would have: ok, failed with a reason, or
// (rerun) to be run again.
func (v *vm) journalWork(st statemachine.State) func(context.Context) workResult {
	j := v.journal(st)
	timeout := v.cfg.hookTimeoutFor(st)
	return func(ctx context.Context) workResult {
		o, code := j.settle(ctx, timeout)
		switch {
		case o == outcomeNone:
			return workResult{rerun: true}
		case code == 0:
			return workResult{ok: true}
		default:
			return workResult{reason: fmt.Sprintf("hook %s, started by the previous daemon, exited with status %d", st, code)}
		}
	}
}
