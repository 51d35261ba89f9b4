package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/savefile"
	"github.com/vmstated/vmstated/statemachine"
)

// stepSuspend is the work of suspending: the suspending hook, the save,
// the end of the hypervisor.
const stepSuspend = "suspend"

// KindProgress: how far a suspend has saved the guest (Reason says it).
const KindProgress = "progress"

// progressEvery spaces out the progress events of one save.
const progressEvery = 250 * time.Millisecond

// SavedState describes the saved guest of a suspended VM: the file
// <statedir>/<name>.save, a savefile header followed by the hypervisor's
// state.
type SavedState struct {
	Size    int64     `json:"size"`
	Time    time.Time `json:"time"`
	SavedBy string    `json:"saved_by,omitempty"`
}

// SuspendOptions tune a suspend.
type SuspendOptions struct {
	// Resume keeps the VM wanted running: the next daemon start after a
	// reboot (or any daemon start) restores it. The host-shutdown path
	// sets it, so that a reboot is only a pause for the guest.
	Resume bool `json:"resume,omitempty"`
}

// savePath is where a VM's saved guest lives.
func (s *Supervisor) savePath(name string) string {
	return filepath.Join(s.stateDir, name+".save")
}

// saveTemp is where a save is written before it is whole.
func (s *Supervisor) saveTemp(name string) string {
	return filepath.Join(s.stateDir, "."+name+".save.tmp")
}

// setSaved records the saved guest (nil: none), in the machine too.
func (v *vm) setSaved(st *SavedState) {
	v.guestSave = st
	v.m.MarkSaved(st != nil)
}

// cmdSuspend saves a running or paused guest and takes the VM down to
// suspended.
func (v *vm) cmdSuspend(ctx context.Context, c command) error {
	if !v.m.Can(statemachine.Suspend) {
		return v.notAllowed(c)
	}
	if err := v.canSuspend(); err != nil {
		return err
	}
	if v.sup.stateDir == "" {
		return fmt.Errorf("cannot suspend %s: the daemon runs without a state directory (-S) to save the guest in", v.name)
	}
	v.desired = statemachine.Suspended
	v.suspendPaused = v.m.State() == statemachine.Paused
	reason := "suspend requested"
	if c.suspend.Resume {
		v.desired = statemachine.Running
		reason = "suspend requested for a host shutdown"
	}
	return v.fire(ctx, statemachine.Suspend, reason)
}

// canSuspend says whether the VM's hypervisor can save its guest and its
// driver restore one.
func (v *vm) canSuspend() error {
	_, saves := v.inst.(hypervisor.Suspender)
	drv := ""
	if v.cfg != nil {
		drv = v.cfg.driver
	}
	_, restores := v.sup.drivers[drv].(hypervisor.Restorer)
	if v.inst == nil || !saves || !restores {
		return fmt.Errorf("%w: the %s driver cannot suspend (vm %s); only qemu VMs can", hypervisor.ErrNotSupported, drv, v.name)
	}
	return nil
}

// cmdDiscard drops a saved guest: of a suspended VM, or of a failed one
// whose restore did not work.
func (v *vm) cmdDiscard(ctx context.Context, c command) error {
	if !v.m.Can(statemachine.Discard) || v.guestSave == nil {
		if v.m.State() == statemachine.Failed {
			return fmt.Errorf("%w: %s keeps no saved guest state to discard; use 'vmstatedctl failreset %s'", statemachine.ErrNotAllowed, v.name, v.name)
		}
		return v.notAllowed(c)
	}
	if err := os.Remove(v.sup.savePath(v.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard %s: %w", v.name, err)
	}
	v.setSaved(nil)
	v.desired = statemachine.Stopped
	return v.fire(ctx, statemachine.Discard, "saved guest state discarded")
}

// enterSuspending starts the save.
func enterSuspending(v *vm, ctx context.Context, tr statemachine.Transition) {
	inst := v.inst
	call := v.hookCall(statemachine.Suspending, tr)
	header := savefile.Header{Name: v.name, Hypervisor: v.cfg.driver}
	drv, spec := v.sup.drivers[v.cfg.driver], v.specFor(v.cfg)
	v.spawn(ctx, stepSuspend, func(ctx context.Context) workResult {
		o := v.sup.runHook(ctx, call, v.log)
		if ctx.Err() == nil {
			v.hookEvent(statemachine.Suspending, o.ok, o.reason, o.skipped)
		}
		if !o.ok {
			return workResult{reason: o.reason, inst: inst}
		}
		if r, ok := drv.(hypervisor.Restorer); ok {
			// What a receiving host checks before it restores anything.
			if _, digest, err := r.Compat(ctx, spec); err == nil {
				header.ConfigDigest = digest
			}
		}
		saved, err := v.saveGuest(ctx, inst, header)
		if err != nil {
			return workResult{reason: err.Error(), inst: inst}
		}
		// The state is safe on disk: the hypervisor may go.
		if err := inst.Kill(); err != nil {
			v.log.Printf("ending the hypervisor after the save: %v", err)
		}
		return workResult{ok: true, saved: saved}
	})
}

// saveGuest writes the header and the hypervisor's state to a temporary
// file, flushes it, and renames it into place: a save file under its own
// name is always whole.
func (v *vm) saveGuest(ctx context.Context, inst hypervisor.Instance, h savefile.Header) (*SavedState, error) {
	sp := inst.(hypervisor.Suspender)
	tmp, final := v.sup.saveTemp(v.name), v.sup.savePath(v.name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("save file: %w", err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(tmp)
		}
	}()
	h.SavedBy, h.Time = sp.SavedBy(), v.sup.now().UTC()
	if err := savefile.Write(f, h); err != nil {
		return nil, fmt.Errorf("save file: %w", err)
	}
	t0 := time.Now()
	var last time.Time
	lastPct := -1
	err = sp.Save(ctx, f, func(p hypervisor.SaveProgress) {
		pct := 0
		switch {
		case p.Status == "completed":
			pct = 100
		case p.Total > 0 && p.Remaining <= p.Total:
			pct = int((p.Total - p.Remaining) * 100 / p.Total)
		}
		if pct == lastPct || time.Since(last) < progressEvery && p.Status != "completed" {
			return
		}
		last, lastPct = time.Now(), pct
		msg := fmt.Sprintf("saving the guest: %s, %d%% of %d MiB, %d MiB written", p.Status, pct, p.Total>>20, p.Transferred>>20)
		v.sup.bus.Publish(Event{Time: v.sup.now(), Kind: KindProgress, VM: v.name, To: statemachine.Suspending, Reason: msg})
	})
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("save file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("save file: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("save file: %w", err)
	}
	ok = true
	if err := atomicfile.SyncDir(v.sup.stateDir); err != nil {
		v.log.Printf("flushing the state directory after the save: %v", err)
	}
	v.log.Printf("guest state saved to %s: %d MiB in %s", final, fi.Size()>>20, time.Since(t0).Round(time.Millisecond))
	return &SavedState{Size: fi.Size(), Time: h.Time, SavedBy: h.SavedBy}, nil
}

// specFor is the Spec a launch of settings s uses, without its writers.
func (v *vm) specFor(s *settings) hypervisor.Spec {
	spec := s.spec
	spec.Name = s.name
	spec.RunDir = filepath.Join(v.sup.runDir, s.name)
	return spec
}

// suspendResult handles the end of the save.
func suspendResult(v *vm, ctx context.Context, r workResult) {
	if r.ok {
		v.setSaved(r.saved)
		v.inst = nil
		v.fire(ctx, statemachine.Done, fmt.Sprintf("guest state saved (%d MiB)", r.saved.Size>>20))
		return
	}
	if r.inst == nil || isDone(r.inst) {
		v.inst = nil
		v.desired = statemachine.Stopped
		v.fire(ctx, statemachine.Fail, "suspend failed, and the hypervisor is gone: "+r.reason)
		return
	}
	// The guest is paused, its state unsaved: it carries on, or, when its
	// user had paused it, stays paused (a save that fails must not let a
	// guest held frozen run).
	v.desired = statemachine.Running
	if v.suspendPaused {
		reason := "suspend failed, the guest stays paused: " + r.reason
		if v.fire(ctx, statemachine.Abort, reason) == nil {
			v.fire(ctx, statemachine.Pause, reason)
		}
		return
	}
	v.resumeGuest(ctx, r.inst)
	v.fire(ctx, statemachine.Abort, "suspend failed, the guest runs on: "+r.reason)
}

// resumeGuest lets a guest a save paused run on.
func (v *vm) resumeGuest(ctx context.Context, inst hypervisor.Instance) {
	if p, ok := inst.(hypervisor.Pauser); ok {
		rctx, cancel := context.WithTimeout(ctx, controlTimeout)
		if err := p.Resume(rctx); err != nil {
			v.log.Printf("resuming the guest: %v", err)
		}
		cancel()
	}
}

// recoverSuspending: the daemon went down during a save. A hypervisor that
// still runs keeps the guest: the save is abandoned and the guest runs on
// (a save still in progress is cancelled first, else its end would pause
// the guest again). A hypervisor that is gone left a whole save file, or
// nothing: the rename into place comes before the end of the hypervisor.
func recoverSuspending(v *vm, ctx context.Context, inst hypervisor.Instance, _ recovering) {
	os.Remove(v.sup.saveTemp(v.name))
	if inst != nil {
		v.setInstance(inst)
		if sp, ok := inst.(hypervisor.SaveCanceller); ok {
			cctx, cancel := context.WithTimeout(ctx, controlTimeout)
			if err := sp.CancelSave(cctx); err != nil {
				v.log.Printf("cancelling the interrupted save: %v", err)
			}
			cancel()
		}
		os.Remove(v.sup.savePath(v.name))
		v.resumeGuest(ctx, inst)
		v.desired = statemachine.Running
		v.fire(ctx, statemachine.Abort, "the daemon restarted during the suspend; the guest runs on")
		return
	}
	if st, err := readSaved(v.sup.savePath(v.name)); err == nil {
		v.setSaved(st)
		v.fire(ctx, statemachine.Done, "guest state saved before the daemon restarted")
		return
	}
	v.desired = statemachine.Stopped
	v.fire(ctx, statemachine.Fail, "the hypervisor ended during the suspend, and no saved guest state was found")
}

// readSaved describes a save file from its header.
func readSaved(path string) (*SavedState, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := savefile.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &SavedState{Size: fi.Size(), Time: h.Time, SavedBy: h.SavedBy}, nil
}

// openSaved opens the VM's save file for a restore, positioned after its
// header, which must name this VM.
func (v *vm) openSaved(name string) (*os.File, error) {
	path := v.sup.savePath(name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("saved guest state: %w; 'vmstatedctl discard %s' boots it afresh at the next start", err, name)
	}
	h, err := savefile.Read(f)
	if err == nil && h.Name != name {
		err = fmt.Errorf("it holds VM %q", h.Name)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("saved guest state %s: %w; 'vmstatedctl discard %s' drops it", path, err, name)
	}
	return f, nil
}

// restoreLaunch starts the hypervisor from the saved guest instead of
// booting it.
func (v *vm) restoreLaunch(ctx context.Context, drv hypervisor.Driver, spec hypervisor.Spec) (hypervisor.Instance, error) {
	r, ok := drv.(hypervisor.Restorer)
	if !ok {
		return nil, fmt.Errorf("%w: the %s driver cannot restore a saved guest; 'vmstatedctl discard %s' drops it", hypervisor.ErrNotSupported, drv.Name(), v.name)
	}
	f, err := v.openSaved(v.name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	inst, err := r.Restore(ctx, spec, f)
	if err != nil {
		return nil, fmt.Errorf("%w; the saved guest state is kept: fix the cause and run 'vmstatedctl failreset %s' then start it, or 'vmstatedctl discard %s' to boot it afresh", err, v.name, v.name)
	}
	return inst, nil
}

// restored notes that the saved guest now runs again: its file goes.
func (v *vm) restored() {
	if err := os.Remove(v.sup.savePath(v.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		v.log.Printf("removing the used saved guest state: %v", err)
	}
	v.setSaved(nil)
}
