package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/statemachine"
)

// stepRecover is the work of finding a VM's hypervisor again after a
// daemon restart.
const stepRecover = "recover"

// recovering carries a VM's persisted record to its actor.
type recovering struct {
	rec       Record
	autostart bool
}

// LoadOptions tune Load.
type LoadOptions struct {
	// FirstStartThisBoot is true on the daemon's first start since the host
	// booted: VMs with autostart are started. Otherwise the desired states
	// recorded by the previous daemon are restored.
	FirstStartThisBoot bool
}

// Load creates the VMs of the first config snapshot and recovers what an
// earlier daemon left: running hypervisors are re-adopted (same pid and
// start time), ones that died meanwhile are handled as crashes,
// interrupted steps are completed or compensated, persisted stop
// deadlines are re-armed, and failed VMs stay failed. Then autostart VMs
// start on the first daemon start of a boot.
func (s *Supervisor) Load(snap *config.Snapshot, opts LoadOptions) {
	records := s.readRecords()
	s.sweepPartialSaves()
	names := make(map[string]*settings)
	errs := make(map[string]string)
	if snap.RootErr == nil {
		for name, c := range snap.VMs {
			names[name] = settingsFrom(c)
		}
		for _, inv := range snap.Invalid {
			if inv.Name != "" {
				if _, ok := names[inv.Name]; !ok {
					names[inv.Name] = nil
					errs[inv.Name] = inv.Diagnostics.Errors().Error()
				}
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		cfg := names[name]
		r, ok := records[name]
		switch {
		case !ok:
			v := s.add(name, cfg, errs[name], statemachine.Stopped)
			if opts.FirstStartThisBoot && cfg != nil && cfg.autostart {
				_ = v.send(s.ctx, recovering{rec: Record{Name: name, State: statemachine.Stopped}, autostart: true})
			}
		case r.err != nil && opts.FirstStartThisBoot:
			// The host rebooted: no process of the VM survived, so an
			// unreadable record (torn by the crash) means stopped.
			s.logf("%s: %v; the host has rebooted since, so the VM is taken for stopped", name, r.err)
			v := s.add(name, cfg, errs[name], statemachine.Stopped)
			if cfg != nil && cfg.autostart {
				_ = v.send(s.ctx, recovering{rec: Record{Name: name, State: statemachine.Stopped}, autostart: true})
			}
		case r.err != nil:
			s.add(name, cfg, errs[name], statemachine.Failed).setFailure(r.err.Error())
		default:
			v := s.addRecovered(name, cfg, errs[name], r.rec)
			v.kept = r.kept
			_ = v.send(s.ctx, recovering{rec: r.rec, autostart: opts.FirstStartThisBoot && cfg != nil && cfg.autostart})
		}
	}
	// Records of VMs whose directory went away while the daemon was down:
	// a hypervisor that still runs is kept (and can be stopped), as for a
	// directory removed while the daemon runs; the rest are forgotten.
	for name, r := range records {
		if _, ok := names[name]; ok {
			continue
		}
		if r.err != nil || r.rec.Handle == nil {
			s.removeRecord(name)
			continue
		}
		// Settings of a VM known from its record alone: the config's
		// defaults where a loaded config would have had them.
		cfg := &settings{name: name, driver: r.rec.Handle.Driver, spec: hypervisor.Spec{Name: name},
			stopTimeout: config.DefaultStopTimeout, hookTimeout: config.DefaultHookTimeout, maxRestartTime: config.DefaultMaxRestartTime,
			onPoweroff: Policy(config.DefaultOnPoweroff), onReboot: Policy(config.DefaultOnReboot), onCrash: Policy(config.DefaultOnCrash),
			logMaxSizeMB: config.DefaultLogMaxSizeMB}
		v := s.addRecovered(name, cfg, "", r.rec)
		v.kept = r.kept
		_ = v.send(s.ctx, recovering{rec: r.rec})
		_ = v.send(s.ctx, configUpdate{removed: true})
	}
	s.reportOrphans(records)
	s.sweepNetworks(func(name string) bool {
		// An unreadable record still claims its VM: its hypervisor
		// may run, and the network goes when the VM comes to rest.
		_, ok := records[name]
		return ok
	})
	// Leases of VMs whose directory went away while the daemon was down.
	// Only when every directory could be read: a name a broken config
	// hides still holds its address.
	if snap.RootErr == nil && len(snap.Invalid) == 0 {
		s.releaseLeases(func(name string) bool {
			if _, ok := names[name]; ok {
				return false
			}
			r, ok := records[name]
			return !ok || r.err != nil || r.rec.Handle == nil
		})
	}
}

// loaded is one record read from the state directory.
type loaded struct {
	rec Record
	err error // the record was unreadable and has been moved aside
	// kept is set when a copy of an unsaved record lies in the run
	// directory (see store.keep), whether or not it was the newer.
	kept bool
}

// readRecords reads every state record. An unreadable one is moved aside
// (never deleted) and reported; its VM then waits in failed for a person to
// check on it, rather than being taken for stopped.
func (s *Supervisor) readRecords() map[string]loaded {
	out := make(map[string]loaded)
	if s.stateDir == "" {
		return out
	}
	entries, err := os.ReadDir(s.stateDir)
	if err != nil {
		if !os.IsNotExist(err) {
			s.logf("reading state directory: %v", err)
		}
		return out
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
			continue
		}
		name := strings.TrimSuffix(n, ".json")
		path := filepath.Join(s.stateDir, n)
		rec, err := readRecord(path)
		if err == nil && rec.Name != name {
			err = fmt.Errorf("%s: record is for %q", path, rec.Name)
		}
		if err != nil {
			aside := fmt.Sprintf("%s.corrupt-%s", path, s.now().UTC().Format("20060102T150405"))
			if mvErr := os.Rename(path, aside); mvErr != nil {
				s.logf("state record %s is unreadable (%v) and could not be moved aside: %v", path, err, mvErr)
			} else {
				s.logf("state record %s is unreadable (%v); moved to %s", path, err, aside)
			}
			out[name] = loaded{err: fmt.Errorf("state record was unreadable (%v), moved to %s; check whether the VM's hypervisor still runs, stop it by hand if so, then run failreset", err, aside)}
			continue
		}
		out[name] = loaded{rec: rec}
	}
	s.readKept(out)
	return out
}

// readKept goes by the copies of records the last daemon could not write
// to the state directory, where they are newer than the record there.
// A copy that cannot be read is left alone: the record goes.
func (s *Supervisor) readKept(out map[string]loaded) {
	if s.store == nil || s.store.keepDir == "" {
		return
	}
	entries, err := os.ReadDir(s.store.keepDir)
	if err != nil {
		if !os.IsNotExist(err) {
			s.logf("reading the copies of unsaved state records: %v", err)
		}
		return
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		name := strings.TrimSuffix(n, ".json")
		path := filepath.Join(s.store.keepDir, n)
		rec, err := readRecord(path)
		if err == nil && rec.Name != name {
			err = fmt.Errorf("%s: record is for %q", path, rec.Name)
		}
		if err != nil {
			s.logf("copy of an unsaved state record %s is unreadable (%v); going by the state directory", path, err)
			continue
		}
		l, ok := out[name]
		if ok && l.err == nil && l.rec.Seq >= rec.Seq {
			l.kept = true
			out[name] = l
			continue
		}
		s.logf("%s: the last daemon could not save its state record; going by the copy it kept in %s (%s, wanted %s)", name, path, rec.State, rec.Desired)
		out[name] = loaded{rec: rec, kept: true}
	}
}

// addRecovered creates an actor in the state its record names.
func (s *Supervisor) addRecovered(name string, cfg *settings, configErr string, r Record) *vm {
	v := newVM(s, name, cfg, s.logFor(name, cfg), r.State, r.Since)
	v.configErr = configErr
	v.desired = r.Desired
	if v.desired == "" {
		v.desired = statemachine.Stopped
	}
	v.lastExit, v.lastReason, v.deadline, v.stopForce = r.LastExit, r.Reason, r.StopDeadline, r.StopForce
	v.recSeq = r.Seq
	v.vncAuto = r.VNCPassword
	v.showVNCPassword(v.vncPasswordFor(cfg, false))
	v.recovering = true
	v.m.Budget().SetTimes(r.Restarts)
	if r.Failure != "" {
		v.m.MarkFailed(r.Failure)
	}
	v.setSaved(r.Saved)
	v.publishStatus()
	s.register(v)
	return v
}

// setFailure puts a fresh actor in failure mode with a reason (a VM whose
// record was unreadable). Only used before the actor runs.
func (v *vm) setFailure(reason string) {
	v.m.MarkFailed(reason)
	v.lastReason = reason
	v.log.Printf("%s", reason)
	v.publishStatus()
}

// onRecover starts recovering from a record: the hypervisor is looked for
// first when one may run.
func (v *vm) onRecover(ctx context.Context, r recovering) {
	v.recovery = &r
	st := v.m.State()
	if st != statemachine.Stopped || r.rec.Handle != nil {
		v.log.Printf("daemon restarted; recovering from %s", st)
	}
	v.recoverNetwork(ctx, st)
	h := r.rec.Handle
	if st == statemachine.StartStorage || st == statemachine.Restarting {
		// The daemon may have died between a launch and saving its handle
		// (the record may still name the hypervisor a restart replaced);
		// the driver left the newest handle in the run directory.
		if fh, err := hypervisor.ReadHandleFile(filepath.Join(v.sup.runDir, v.name)); err == nil {
			h = &fh
			r.rec.Handle = h
		}
	}
	if h == nil {
		v.resume(ctx, nil, "")
		return
	}
	drv := v.sup.drivers[h.Driver]
	if drv == nil {
		v.resume(ctx, nil, fmt.Sprintf("no %q driver in this daemon", h.Driver))
		return
	}
	var spec hypervisor.Spec
	if v.cfg != nil {
		spec = v.cfg.spec
	}
	spec.Name = v.name
	spec.RunDir = filepath.Join(v.sup.runDir, v.name)
	spec.Output = v.log.Writer(h.Driver)
	spec.Console = v.consoleOutput()
	handle := *h
	v.spawn(ctx, stepRecover, func(ctx context.Context) workResult {
		inst, err := drv.Recover(ctx, spec, handle)
		if err != nil {
			return workResult{reason: err.Error()}
		}
		return workResult{ok: true, inst: inst}
	})
}

// resume continues the lifecycle after a daemon restart, with the
// re-adopted instance or nil when no hypervisor runs any more.
func (v *vm) resume(ctx context.Context, inst hypervisor.Instance, why string) {
	r := v.recovery
	v.recovery, v.recovering = nil, false
	if inst != nil {
		what := fmt.Sprintf("re-adopted %s pid %d", inst.Handle().Driver, inst.Handle().PID)
		v.log.Printf("%s", what)
		defer func() {
			v.publishStatus() // before the event: whoever reacts finds it
			v.sup.bus.Publish(Event{Kind: KindAdopted, VM: v.name, Reason: what + " after a daemon restart"})
		}()
	} else if r.rec.Handle != nil && r.rec.Handle.PID == 0 {
		v.log.Printf("%s", orUnknown(why)) // a launch never recorded: the driver says what became of it
	} else if r.rec.Handle != nil {
		v.log.Printf("hypervisor pid %d is gone (%s)", r.rec.Handle.PID, orUnknown(why))
	}
	behaviours[v.m.State()].recover(v, ctx, inst, *r)
}

// resumeNotice runs the hook of a resting state (stopped, failed) again
// when the previous daemon started it and it did not finish. A hook that
// never started leaves no journal (after a reboot the runtime directory is
// empty), so nothing runs twice and nothing runs at every boot.
func (v *vm) resumeNotice(ctx context.Context, st statemachine.State) {
	j := v.journal(st)
	if j.pid == "" {
		return
	}
	if _, err := os.Stat(j.pid); err != nil {
		return
	}
	timeout := v.cfg.hookTimeoutFor(st)
	again := v.hookWork(st, statemachine.Transition{VM: v.name, From: st, To: st,
		Reason: "continuing after a daemon restart"})
	v.hook = st
	v.spawn(ctx, stepNotify, func(ctx context.Context) workResult {
		if o, code := j.settle(ctx, timeout); o == outcomeDone {
			if code != 0 {
				return workResult{hook: st, reason: fmt.Sprintf("hook %s exited with status %d", st, code)}
			}
			return workResult{hook: st, ok: true}
		}
		v.log.Printf("hook %s did not finish before the daemon restarted; running it again", st)
		return again(ctx)
	})
}

// afterJournal continues a step whose hook the previous daemon ran: with
// the hook's outcome as if it had just finished, or by running it again
// when it did not finish.
func (v *vm) afterJournal(ctx context.Context, r workResult) {
	st := v.m.State()
	tr := statemachine.Transition{VM: v.name, From: st, To: st, Reason: "continuing after a daemon restart"}
	if r.rerun {
		v.log.Printf("hook %s did not finish before the daemon restarted; running it again", st)
	} else if r.ok {
		// When it ended is not known (before the previous daemon exited,
		// or after), only that it did: say that much.
		v.log.Printf("hook %s, started by the previous daemon, finished (exit status 0)", st)
	} else {
		v.log.Printf("%s", r.reason)
	}
	behaviours[st].journaled(v, ctx, r, tr)
}

func orUnknown(s string) string {
	if s == "" {
		return "not found"
	}
	return s
}

// reportOrphans logs hypervisor processes that a runtime directory names
// but no record claims. They are never killed: a person decides.
func (s *Supervisor) reportOrphans(records map[string]loaded) {
	if s.runDir == "" {
		return
	}
	entries, err := os.ReadDir(s.runDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name := e.Name()
		if r, ok := records[name]; ok && r.err == nil &&
			(r.rec.Handle != nil || r.rec.State == statemachine.StartStorage || r.rec.State == statemachine.Restarting) {
			// Claimed, or about to be adopted from the driver's handle file.
			continue
		}
		pids := livePidfiles(filepath.Join(s.runDir, name))
		if h, err := hypervisor.ReadHandleFile(filepath.Join(s.runDir, name)); err == nil && h.PID > 0 {
			if st, err := process.StartTimeOf(h.PID); err == nil && st == h.StartTime && !slices.Contains(pids, h.PID) {
				pids = append(pids, h.PID)
			}
		} else if err == nil && h.Cgroup != "" {
			// A launch never recorded: what runs in its cgroup.
			members, _ := process.Group{Cgroup: h.Cgroup}.Members()
			for _, pid := range members {
				if !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
		}
		for _, pid := range pids {
			msg := fmt.Sprintf("orphan: process %d from %s runs but no state record claims it; it was not adopted nor killed, stop it by hand if it is not wanted", pid, filepath.Join(s.runDir, name))
			s.logf("%s", msg)
			if v, err := s.lookup(name); err == nil {
				_ = v.send(s.ctx, inspect{fn: func() { v.orphan = msg }, done: make(chan struct{})})
			}
		}
	}
}

// livePidfiles returns the live processes named by *.pid files in dir.
func livePidfiles(dir string) []int {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	var out []int
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// FirstStartThisBoot reports whether this is the daemon's first start since
// the host booted, and notes that it has started. The marker lives in the
// runtime directory (a tmpfs on most systems) and holds the boot's identity,
// so it is right even where the runtime directory survives a reboot.
func FirstStartThisBoot(runDir string) (bool, error) {
	id, err := bootID()
	if err != nil {
		return false, err
	}
	marker := filepath.Join(runDir, "boot-id")
	old, err := os.ReadFile(marker)
	if err == nil && strings.TrimSpace(string(old)) == id {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return true, err
	}
	return true, atomicfile.Write(marker, []byte(id+"\n"), atomicfile.Options{Mode: 0o644})
}
