package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/hypervisor"
)

// stateDirOnTmpfs puts the env's state directory on a small tmpfs of its
// own, so the test can turn it read-only or fill it. It skips when not
// root; the mount is gone when the test ends, whatever happened.
func stateDirOnTmpfs(t *testing.T, e *env) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for the state directory")
	}
	if err := os.MkdirAll(e.stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", e.stateDir, "tmpfs", 0, "size=2m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	// Registered after the env's cleanup, so it runs before it, while a
	// daemon may still hold the directory: a lazy unmount lets it go on
	// until the env stops it.
	t.Cleanup(func() { _ = unix.Unmount(e.stateDir, unix.MNT_DETACH) })
}

func remount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(unix.MS_REMOUNT)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size=2m,mode=0755"); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
	}
}

// fill writes a file until the file system is full; the returned func
// frees the space again.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, ".ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// Whatever is left below a block goes too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// diskRecord reads a VM's state record as the daemon left it.
func (e *env) diskRecord(name string) map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir, name+".json"))
	if err != nil {
		e.t.Fatalf("record of %s: %v", name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("record of %s: %v", name, err)
	}
	return m
}

// A state directory that turns read-only, then full, while VMs start and
// stop: a start whose intent cannot be recorded (any record on a read-only
// directory, a VM's first record on a full one) launches nothing, a stop
// goes on, the status says the record is not saved, the record is written
// once the directory can take it, and a daemon restart then finds every VM
// where its user left it, with never two processes for one VM.
func TestStateDirReadOnlyThenFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stateDirOnTmpfs(t, e)
	a := e.addVM("rofault-a", sleeper(""))
	b := e.addVM("rofault-b", sleeper(""))
	// A VM never started has no record yet: on a full directory its
	// first one needs space (a's record exists by then).
	c := e.addVM("rofault-c", sleeper(""))
	d := e.start()
	d.do(b, api.ActionStart)
	stB := d.waitUp(b)

	for _, fault := range []string{"read-only", "full"} {
		t.Run(fault, func(t *testing.T) {
			a := a
			if fault == "full" {
				a = c
			}
			var undo func()
			if fault == "read-only" {
				remount(t, e.stateDir, true)
				undo = func() { remount(t, e.stateDir, false) }
			} else {
				undo = fill(t, e.stateDir)
			}
			// A start now must not launch: its intent cannot be recorded.
			d.do(a, api.ActionStart)
			st := d.waitState(a, api.StateFailed)
			if !strings.Contains(st.Reason, "state not saved") || !strings.Contains(st.Reason, "nothing was launched") {
				t.Errorf("reason %q, want it to say the state was not saved and nothing launched", st.Reason)
			}
			if st.RecordError == "" {
				t.Errorf("status of %s does not show the unsaved record", a)
			}
			if p := e.vmProcs(a); len(p) != 0 {
				t.Errorf("%s launched %v although its record could not be written", a, p)
			}
			// A stop goes on. On a read-only directory its record waits;
			// on a full one it is written, as a record that exists is
			// rewritten in place and needs no new space.
			d.do(b, api.ActionStop)
			d.waitState(b, api.StateStopped)
			waitGone(t, stB.PID)
			if fault == "read-only" {
				if st := d.get(b); st.RecordError == "" {
					t.Errorf("status of %s does not show the unsaved record", b)
				}
				out, _, _ := e.ctl("status", b)
				if !strings.Contains(out, "state not saved") {
					t.Errorf("vmstatedctl status does not say the state is not saved:\n%s", out)
				}
			} else {
				if st := d.get(b); st.RecordError != "" {
					t.Errorf("status of %s on a full directory: record error %q, want it saved in place", b, st.RecordError)
				}
				if r := e.diskRecord(b); r["state"] != "stopped" {
					t.Errorf("record of %s on a full directory says %v, want stopped", b, r["state"])
				}
			}

			undo()
			d.waitStatus(a, "record saved", func(s api.Status) bool { return s.RecordError == "" })
			d.waitStatus(b, "record saved", func(s api.Status) bool { return s.RecordError == "" })
			if r := e.diskRecord(b); r["state"] != "stopped" || r["desired"] != "stopped" {
				t.Errorf("record of %s after the fault: state %v desired %v, want stopped/stopped", b, r["state"], r["desired"])
			}
			if r := e.diskRecord(a); r["state"] != "failed" || r["desired"] != "stopped" {
				t.Errorf("record of %s after the fault: state %v desired %v, want failed/stopped", a, r["state"], r["desired"])
			}
			d.do(a, api.ActionFailReset)
			d.waitState(a, api.StateStopped)
			// b runs again for the next round (and the restart below).
			d.do(b, api.ActionStart)
			stB = d.waitUp(b)
		})
	}

	// The restart: b runs on, adopted; a stays stopped.
	d.term()
	d2 := e.start()
	st := d2.waitStatus(b, "re-adopted", func(s api.Status) bool { return s.PID != 0 && s.Hook == "" })
	if st.PID != stB.PID {
		t.Errorf("%s has pid %d after the restart, want the adopted %d", b, st.PID, stB.PID)
	}
	if p := e.vmProcs(b); len(p) != 1 {
		t.Errorf("%s has processes %v, want exactly one", b, p)
	}
	if st := d2.get(a); st.State != api.StateStopped || st.Desired != api.StateStopped {
		t.Errorf("%s is %s desired %s after the restart, want stopped", a, st.State, st.Desired)
	}
	if p := e.vmProcs(a); len(p) != 0 {
		t.Errorf("%s has processes %v after the restart, want none", a, p)
	}
	d2.do(b, api.ActionStop)
	d2.waitState(b, api.StateStopped)
}

// A stop and a failreset done while the state directory takes no record
// are not undone when the daemon is killed before the records could be
// written: the next daemon goes by the copies kept in the run directory,
// and the records are written once the directory takes them again.
func TestUnsavedStopSurvivesDaemonKill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stateDirOnTmpfs(t, e)
	up := e.addVM("unsaved-stop", sleeper(""))
	bad := e.addVM("unsaved-reset", sleeper(""))
	e.control(bad, "start_network", "fail", true)
	d := e.start()
	d.do(up, api.ActionStart)
	st := d.waitUp(up)
	d.do(bad, api.ActionStart)
	d.waitState(bad, api.StateFailed)
	e.waitLastHook(bad, "failed")
	e.control(bad, "start_network", "fail", false)

	remount(t, e.stateDir, true)
	t.Cleanup(func() { remount(t, e.stateDir, false) })
	d.do(up, api.ActionStop)
	d.waitStatus(up, "stopped, record not saved", func(s api.Status) bool {
		return s.State == api.StateStopped && s.Hook == "" && s.RecordError != ""
	})
	waitGone(t, st.PID)
	d.do(bad, api.ActionFailReset)
	d.waitStatus(bad, "reset, record not saved", func(s api.Status) bool {
		return s.State == api.StateStopped && s.Hook == "" && s.RecordError != ""
	})
	if r := e.diskRecord(up); r["desired"] != "running" {
		t.Fatalf("the state directory took the record of %s although it is read-only: %v", up, r)
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	d.c.Close()

	// The directory is still read-only for the next daemon, which goes
	// by the copies. Then the directory takes records again: a marker VM
	// started now is up only after every actor has handled its record.
	before := len(e.records(bad))
	marker := e.addVM("unsaved-marker", sleeper(""))
	d2 := e.start()
	d2.waitStatus(up, "recovered", func(s api.Status) bool { return s.State == api.StateStopped && s.Hook == "" })
	remount(t, e.stateDir, false)
	d2.do(marker, api.ActionStart)
	d2.waitUp(marker)
	for _, vm := range []string{up, bad} {
		if st := d2.get(vm); st.State != api.StateStopped || st.Desired != api.StateStopped {
			t.Errorf("%s is %s desired %s after the daemon was killed, want stopped as its user left it", vm, st.State, st.Desired)
		}
		if p := e.vmProcs(vm); len(p) != 0 {
			t.Errorf("%s has processes %v after the restart, want none", vm, p)
		}
	}
	if recs := e.records(bad)[before:]; len(recs) != 0 {
		t.Errorf("hooks of %s ran after the restart: %v", bad, states(recs))
	}

	for _, vm := range []string{up, bad} {
		d2.waitStatus(vm, "record saved", func(s api.Status) bool { return s.RecordError == "" })
		if r := e.diskRecord(vm); r["state"] != "stopped" || r["desired"] != "stopped" {
			t.Errorf("record of %s once saved: state %v desired %v, want stopped/stopped", vm, r["state"], r["desired"])
		}
		if exists(filepath.Join(e.runDir, ".unsaved-records", vm+".json")) {
			t.Errorf("the copy of %s's record is still kept after the record was saved", vm)
		}
	}
	d2.do(marker, api.ActionStop)
	d2.waitState(marker, api.StateStopped)
}

// A daemon out of file descriptors cannot write records: the status says
// so, and they are written once descriptors are free again.
func TestRecordWrittenAfterDescriptorsRunOut(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to change another process's descriptor limit")
	}
	e := newEnv(t)
	vm := e.addVM("nofds", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	pid := d.cmd.Process.Pid

	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	// No descriptor beyond standard input, output and error: every file
	// the daemon opens now fails, records included.
	tight := unix.Rlimit{Cur: 3, Max: old.Max}
	// The API client needs a connection: make one first, then tighten.
	c := d.c
	if _, err := c.Get(ctx(t), vm); err != nil {
		t.Fatal(err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &tight, nil); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
				t.Error(err)
			}
		}
	}
	defer restore()
	// Stop the VM by killing its process: a crash the daemon sees
	// through its exit watcher, needing no new descriptor to notice. It
	// restarts the guest (or fails to), and its records cannot be
	// written.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a record write to fail for lack of descriptors", func() bool {
		return strings.Contains(d.stderr.String(), "state not saved")
	})
	restore()
	final := d.waitStatus(vm, "record saved and settled", func(s api.Status) bool {
		return s.RecordError == "" && (s.State == api.StateRunning && s.Hook == "" || s.State == api.StateFailed)
	})
	rec := e.diskRecord(vm)
	if rec["state"] != string(final.State) {
		t.Errorf("record says %v, status %s", rec["state"], final.State)
	}
	if p := e.vmProcs(vm); len(p) > 1 {
		t.Errorf("%s has processes %v, want at most one", vm, p)
	}
	if final.State == api.StateRunning {
		d.do(vm, api.ActionStop)
		d.waitState(vm, api.StateStopped)
	}
}

// failreset is recorded: a VM whose start failed, reset after a daemon
// restart, stays stopped across the next restart and runs no start hook.
func TestFailResetSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("failreset", sleeper(""))
	e.control(vm, "start_network", "fail", true)
	d := e.start()
	evs := d.events(vm)
	d.do(vm, api.ActionStart)
	d.waitState(vm, api.StateFailed)
	e.waitLastHook(vm, "failed")
	// The failed hook's end is an event too.
	evs.waitFor(t, "the failed hook's end", func(evs []api.Event) bool {
		for _, ev := range evs {
			if ev.Kind == api.KindHook && ev.To == api.StateFailed {
				return true
			}
		}
		return false
	})
	if r := e.diskRecord(vm); r["desired"] != "stopped" {
		t.Errorf("record of a failed VM says desired %v, want stopped", r["desired"])
	}
	e.control(vm, "start_network", "fail", false)
	d.term()

	d2 := e.start()
	d2.waitState(vm, api.StateFailed)
	d2.do(vm, api.ActionFailReset)
	d2.waitStatus(vm, "reset and settled", func(s api.Status) bool { return s.State == api.StateStopped && s.Hook == "" })
	if r := e.diskRecord(vm); r["state"] != "stopped" || r["desired"] != "stopped" {
		t.Errorf("record after failreset: state %v desired %v, want stopped/stopped", r["state"], r["desired"])
	}
	before := len(e.records(vm))
	d2.term()

	// A VM marker started after the restart is up only after every
	// actor has handled its record; the reset VM must not have moved.
	marker := e.addVM("failreset-marker", sleeper(""))
	d3 := e.start()
	d3.do(marker, api.ActionStart)
	d3.waitUp(marker)
	if st := d3.get(vm); st.State != api.StateStopped || st.Desired != api.StateStopped {
		t.Errorf("%s is %s desired %s after the second restart, want stopped", vm, st.State, st.Desired)
	}
	if recs := e.records(vm)[before:]; len(recs) != 0 {
		t.Errorf("hooks ran after the restart: %v", states(recs))
	}
	d3.do(marker, api.ActionStop)
	d3.waitState(marker, api.StateStopped)
}

// A daemon killed during a forced stop is followed by one that goes on
// forcing: it does not ask the guest and wait out stop_timeout.
func TestDaemonKilledDuringForcedStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The guest ignores the stop signal, and stop_timeout is far beyond
	// the test's patience: only a forced stop ends it in time.
	vm := e.addVM("forcekill", execVM([]string{"/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 1000"}, "")+"    stop_timeout = 1h;\n")
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	e.control(vm, "stopping", "hang", true)
	if _, err := d.c.Do(ctx(t), vm, api.ActionStop, &api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopping hook to hang", func() bool { return exists(filepath.Join(e.work, vm+".stopping.hanging")) })
	if r := e.diskRecord(vm); r["stop_force"] != true {
		t.Errorf("record during a forced stop: %v, want stop_force", r)
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	e.control(vm, "stopping", "release", true)
	if !alive(st.PID) {
		t.Fatalf("VM process %d died with the daemon", st.PID)
	}
	d2 := e.start()
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	if log := e.readLog(vm); !strings.Contains(log, "forced stop was in progress") {
		t.Errorf("log does not say the forced stop went on:\n%s", log)
	}
}

// Event numbers never go back: a restarted daemon numbers on, and a
// reader resuming after a number of the last run is told what it missed.
func TestEventSequenceSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("evseq", sleeper(""))
	d := e.start()
	evs := d.events(vm)
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	d.do(vm, api.ActionStop)
	seen := evs.waitFor(t, "the stop", func(evs []api.Event) bool {
		for _, ev := range evs {
			if ev.Kind == api.KindHook && ev.To == api.StateStopped {
				return true
			}
		}
		return false
	})
	last := seen[len(seen)-1].Seq
	d.term()

	d2 := e.start()
	evs2 := d2.events(vm)
	d2.do(vm, api.ActionStart)
	got := evs2.waitEnter(t, api.StateStartNetwork, 1)
	if got[0].Seq <= last {
		t.Errorf("first event of the new daemon has seq %d, not after the last one's %d", got[0].Seq, last)
	}
	d2.waitUp(vm)

	s, err := d2.c.Events(ctx(t), api.EventOptions{After: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.Next()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != api.KindLost || !strings.Contains(ev.Reason, "restarted") {
		t.Errorf("resuming after 1 on the new daemon: first event %+v, want a lost notice that says the daemon restarted", ev)
	}
	d2.do(vm, api.ActionStop)
	d2.waitState(vm, api.StateStopped)
}

// stop -w returns once the stopped hook has finished, and every hook,
// stopping and stopped included, ends with an event.
func TestStopWaitsForStoppedHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("stopwait", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	evs := d.events(vm)
	e.control(vm, "stopped", "hang", true)
	cmd := exec.Command(ctlBin, "-s", e.socket, "stop", "-w", vm)
	cmd.Env = e.environ
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		done <- cmd.Wait()
	}()
	waitUntil(t, "the stopped hook to hang", func() bool { return exists(filepath.Join(e.work, vm+".stopped.hanging")) })
	d.waitState(vm, api.StateStopped)
	select {
	case err := <-done:
		t.Fatalf("stop -w returned (%v) while the stopped hook still ran: %v", err, lines)
	default:
	}
	e.control(vm, "stopped", "release", true)
	if err := <-done; err != nil {
		t.Fatalf("stop -w: %v (%v)", err, lines)
	}
	if recs := e.records(vm); recs[len(recs)-1].state != "stopped" {
		t.Errorf("last hook %v", states(recs))
	}
	ended := map[api.State]bool{}
	evs.waitFor(t, "hook ends of the stop", func(evs []api.Event) bool {
		for _, ev := range evs {
			if ev.Kind == api.KindHook {
				ended[ev.To] = true
			}
		}
		return ended[api.StateStopped]
	})
	for _, st := range []api.State{api.StateStopping, api.StateStopStorage, api.StateStopNetwork, api.StateStopped} {
		if !ended[st] {
			t.Errorf("no hook-end event for %s", st)
		}
	}
}

// A record that lost track of a running VM (it still says stopped: the
// write that would have said running never reached the disk) sends no
// second process beside the first after a daemon restart: the start finds
// the live process the run directory's handle names and adopts it.
func TestStartAdoptsProcessTheRecordLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("lostrec", sleeper(""))
	d := e.start()
	// A first start and stop leave a record that says stopped.
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	// The status shows stopped as the VM enters it; the record that
	// says so is written a moment later.
	recPath := filepath.Join(e.stateDir, vm+".json")
	var stopped []byte
	waitUntil(t, "a record that says stopped", func() bool {
		b, err := os.ReadFile(recPath)
		var r struct{ State api.State }
		if err != nil || json.Unmarshal(b, &r) != nil || r.State != api.StateStopped {
			return false
		}
		stopped = b
		return true
	})
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	_ = d.cmd.Process.Kill()
	<-d.done
	if !alive(st.PID) {
		t.Fatalf("VM process %d died with the daemon", st.PID)
	}
	// The record as a daemon that could not write it left it.
	if err := os.WriteFile(recPath, stopped, 0o600); err != nil {
		t.Fatal(err)
	}

	d2 := e.start()
	if got := d2.get(vm); got.State != api.StateStopped {
		t.Fatalf("%s after the restart is %s, want stopped as its record says", vm, got.State)
	}
	d2.do(vm, api.ActionStart)
	got := d2.waitUp(vm)
	if got.PID != st.PID {
		t.Errorf("%s runs as pid %d after the start, want the adopted %d", vm, got.PID, st.PID)
	}
	if p := e.vmProcs(vm); len(p) != 1 {
		t.Errorf("%s has processes %v, want exactly one", vm, p)
	}
	if log := e.readLog(vm); !strings.Contains(log, "adopted it instead of launching another") {
		t.Errorf("log does not say the process was adopted:\n%s", log)
	}
	d2.do(vm, api.ActionStop)
	d2.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
}

// A VM started in a cgroup runs at once, before its handle names its pid:
// the cgroup, recorded in the run directory before the launch, names it
// meanwhile. A daemon that died in that window leaves a record in
// start_storage and a handle with the cgroup only; the next daemon must
// end what runs there and launch the VM once, never beside it.
func TestUnrecordedLaunchIsEnded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("unrecorded", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	runDir := filepath.Join(e.runDir, vm)
	h, err := hypervisor.ReadHandleFile(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if h.Cgroup == "" {
		t.Skip("no cgroup v2 the daemon may use here (needs root): every launch waits at the /bin/sh gate instead")
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	if !alive(st.PID) {
		t.Fatalf("VM process %d died with the daemon", st.PID)
	}
	// What a daemon killed right after the fork leaves: the handle of
	// the launch, and the record of its intent.
	unrecord(t, e, vm, h, "start_storage")
	d2 := e.start()
	got := d2.waitUp(vm)
	waitGone(t, st.PID)
	if got.PID == st.PID {
		t.Fatalf("%s runs as pid %d, the process of the unrecorded launch", vm, got.PID)
	}
	if p := e.vmProcs(vm); len(p) != 1 || p[0] != got.PID {
		t.Errorf("%s has processes %v, want exactly its new one %d", vm, p, got.PID)
	}
	if log := e.readLog(vm); strings.Count(log, "was never recorded; 1 process") != 1 {
		t.Errorf("log does not say once that the unrecorded launch was ended:\n%s", log)
	}

	// The same handle beside a record that lost track of the launch (it
	// says stopped): a start ends the process before it launches.
	h, err = hypervisor.ReadHandleFile(runDir)
	if err != nil {
		t.Fatal(err)
	}
	_ = d2.cmd.Process.Kill()
	<-d2.done
	unrecord(t, e, vm, h, "stopped")
	d3 := e.start()
	if s := d3.get(vm); s.State != api.StateStopped {
		t.Fatalf("%s after the restart is %s, want stopped as its record says", vm, s.State)
	}
	d3.do(vm, api.ActionStart)
	again := d3.waitUp(vm)
	waitGone(t, got.PID)
	if p := e.vmProcs(vm); len(p) != 1 || p[0] != again.PID {
		t.Errorf("%s has processes %v, want exactly its new one %d", vm, p, again.PID)
	}
	if log := e.readLog(vm); strings.Count(log, "was never recorded; 1 process") != 2 {
		t.Errorf("log does not say the second unrecorded launch was ended:\n%s", log)
	}
	d3.do(vm, api.ActionStop)
	d3.waitState(vm, api.StateStopped)
	waitGone(t, again.PID)
}

// unrecord makes the VM's handle h (of a live process in a cgroup) the
// handle of a launch whose pid was never recorded, and its record say
// state (and desired stopped, if stopped), without a handle: what a
// daemon killed between the launch and its record leaves.
func unrecord(t *testing.T, e *env, vm string, h hypervisor.Handle, state string) {
	t.Helper()
	h.PID, h.StartTime, h.PGID = 0, 0, 0
	if err := hypervisor.WriteHandleFile(h); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(e.stateDir, vm+".json")
	var rec map[string]any
	b, err := os.ReadFile(recPath)
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	rec["state"] = state
	if state == "stopped" {
		rec["desired"] = state
	}
	delete(rec, "handle")
	if b, err = json.Marshal(rec); err == nil {
		err = os.WriteFile(recPath, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}
