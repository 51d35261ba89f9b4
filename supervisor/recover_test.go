package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hooks"
	"github.com/vmstated/vmstated/hypervisor"
)

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestRestartReadoptsRunningVM(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	// Up, so that the restart cuts no hook short (that one would run again).
	before := f.waitUp("vm0")
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning)

	f.restart(LoadOptions{})
	if !alive(before.PID) {
		t.Fatal("the VM died with the daemon")
	}
	after := f.waitPID("vm0")
	if after.PID != before.PID || !after.Since.Equal(before.Since) {
		t.Fatalf("after restart: pid %d since %v, before: pid %d since %v", after.PID, after.Since, before.PID, before.Since)
	}
	if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st := f.waitState("vm0", sStopped)
	if st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitPoweroff {
		t.Fatalf("exit of the re-adopted VM: %+v", st.LastExit)
	}
	// Every hook ran once: the restart re-ran none and lost none.
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning, sStopping, sStopStorage, sStopNetwork, sStopped)
	logPath, _ := f.sup.LogPath("vm0")
	data, _ := os.ReadFile(logPath)
	for _, want := range []string{"start_storage -> running", "re-adopted exec pid", "running -> stopping"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the log file lacks %q:\n%s", want, data)
		}
	}
}

func TestVMKilledWhileDaemonDownIsACrash(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	before := f.waitState("vm0", sRunning)
	f.stop()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(before.PID) { // a zombie until init reaps it
		time.Sleep(10 * time.Millisecond)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(before.PID, &ws, syscall.WNOHANG, nil)
	}
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	f.waitPath("vm0", sRestarting, sRestarted, sRunning)
	st := f.waitState("vm0", sRunning)
	if st.PID == before.PID || st.Restarts != 1 || st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitCrash {
		t.Fatalf("status %+v exit %+v", st, st.LastExit)
	}
}

func TestStopDeadlineSurvivesRestart(t *testing.T) {
	for _, past := range []bool{false, true} {
		name := "deadline still ahead"
		if past {
			name = "deadline passed while down"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ready := filepath.Join(f.base, "vm0.ready")
			f.addVM("vm0", stubborn(ready, 3))
			f.sync()
			if err := f.sup.Start(ctx(t), "vm0"); err != nil {
				t.Fatal(err)
			}
			st := f.waitState("vm0", sRunning)
			waitFile(t, ready)
			pid := st.PID
			if err := f.sup.Stop(ctx(t), "vm0", StopOptions{}); err != nil {
				t.Fatal(err)
			}
			f.waitState("vm0", sStopping)
			f.stop()
			rec := readRec(t, f, "vm0")
			if rec.State != sStopping || rec.StopDeadline.IsZero() || rec.Handle == nil || rec.Handle.PID != pid {
				t.Fatalf("persisted record %+v", rec)
			}
			if past {
				rec.StopDeadline = time.Now().Add(-time.Minute)
				writeRec(t, f, rec)
			}
			f.start()
			f.sup.Load(f.w.Initial(), LoadOptions{})
			st = f.waitState("vm0", sStopped)
			if st.LastExit == nil || st.LastExit.Reason != hypervisor.ExitKilled {
				t.Fatalf("exit %+v", st.LastExit)
			}
			logPath, _ := f.sup.LogPath("vm0")
			data, _ := os.ReadFile(logPath)
			want := "guest did not power off within"
			if past {
				want = "stop deadline passed while the daemon was down; forcing"
			}
			if !strings.Contains(string(data), want) {
				t.Fatalf("log lacks %q:\n%s", want, data)
			}
		})
	}
}

func TestCorruptRecordMovedAside(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	f.stop()
	path := filepath.Join(f.base, "state", "vm0.json")
	if err := os.WriteFile(path, []byte(`{"version": 1, "name": "vm0", "state": "runn`), 0o644); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	st := f.waitState("vm0", sFailed)
	if !strings.Contains(st.Reason, "state record was unreadable") || !strings.Contains(st.Reason, "failreset") {
		t.Fatalf("reason %q", st.Reason)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
	if err := f.sup.FailReset(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
}

// A record path that is a directory is not a record of a stopped VM: it
// is moved aside like a corrupt one and the VM waits in failed, saying
// what it found, and a failreset lets it start (its record then written
// in the directory's place).
func TestRecordThatIsADirectory(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	f.stop()
	path := filepath.Join(f.base, "state", "vm0.json")
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	st := f.waitState("vm0", sFailed)
	if !strings.Contains(st.Reason, "not a regular file") || !strings.Contains(st.Reason, "failreset") {
		t.Fatalf("reason %q", st.Reason)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
	if err := f.sup.FailReset(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitState("vm0", sRunning)
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the record after the start: %v, %v", fi, err)
	}
}

func TestCorruptRecordAfterRebootMeansStopped(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper+"\nautostart = true;")
	f.sync()
	f.stop()
	path := filepath.Join(f.base, "state", "vm0.json")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{FirstStartThisBoot: true})
	// Not failed: nothing can have survived the reboot; autostart applies.
	f.waitPID("vm0")
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
}

func TestInterruptedHookRunsAgain(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	f.stop()
	// The daemon went down after entering start_storage, before its hook
	// had finished (no journal of it): the hook runs again and the start
	// goes on.
	writeRec(t, f, Record{Version: recordVersion, Name: "vm0", State: sStartStorage, Desired: sRunning, Since: time.Now()})
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	f.waitState("vm0", sRunning)
	f.waitHooks("vm0", sStartStorage, sRunning)
}

func TestHookFinishedWhileDaemonDownIsNotRunAgain(t *testing.T) {
	for _, code := range []string{"0", "5"} {
		t.Run("status "+code, func(t *testing.T) {
			f := newFixture(t)
			f.addVM("vm0", sleeper)
			f.sync()
			f.stop()
			since := time.Now()
			writeRec(t, f, Record{Version: recordVersion, Name: "vm0", State: sStopNetwork, Desired: sStopped, Since: since})
			// The journal of a stop_network run that finished after the
			// daemon died.
			dir := filepath.Join(f.base, "run", "vm0", "hooks")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, "stop_network."+strconv.FormatInt(since.UnixNano(), 10))
			if err := os.WriteFile(base+".status", []byte(code+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f.start()
			f.sup.Load(f.w.Initial(), LoadOptions{})
			if code == "0" {
				f.waitState("vm0", sStopped)
				// When it finished is not known, only that it did.
				b, err := os.ReadFile(filepath.Join(f.base, "log", "vm0.log"))
				if err != nil || !strings.Contains(string(b), "hook stop_network, started by the previous daemon, finished (exit status 0)") ||
					strings.Contains(string(b), "while the daemon was down") {
					t.Fatalf("vm0.log (%v):\n%s", err, b)
				}
			} else {
				st := f.waitState("vm0", sFailed)
				if !strings.Contains(st.Reason, "hook stop_network, started by the previous daemon, exited with status 5") {
					t.Fatalf("reason %q", st.Reason)
				}
			}
			// Only the notification hook ran: stop_network was not run again.
			want := sStopped
			if code != "0" {
				want = sFailed
			}
			f.waitHooks("vm0", want)
		})
	}
}

func TestJournalSettlesARunningHook(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		want    outcome
		code    int
	}{
		{"finishes while waited for", "sleep 0.3; exit 4", time.Minute, outcomeDone, 4},
		{"runs past its timeout", "sleep 100", 300 * time.Millisecond, outcomeNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "stop_storage"), []byte("#!/bin/sh\n"+tt.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, "hooks", "stop_storage.1")
			j := journal{pid: base + ".pid", status: base + ".status", dir: filepath.Join(dir, "hooks"), state: "stop_storage"}
			j.begin()
			// The run of the daemon that "went away": a plain goroutine.
			done := make(chan hooks.Result, 1)
			go func() {
				done <- hooks.Run(context.Background(), hooks.Request{
					Env:        hooks.Env{Name: "vm0", State: "stop_storage", ConfigDir: dir},
					StatusFile: j.status, Started: j.started, Strict: hooks.StrictOff, Timeout: time.Hour,
				})
			}()
			deadline := time.Now().Add(waitLimit)
			for {
				if _, err := os.Stat(j.pid); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no pid file")
				}
				time.Sleep(5 * time.Millisecond)
			}
			o, code := j.settle(context.Background(), tt.timeout)
			if o != tt.want || code != tt.code {
				t.Fatalf("settle: %v %d, want %v %d", o, code, tt.want, tt.code)
			}
			<-done
		})
	}
}

func TestFailedStaysFailedAcrossRestart(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.set("vm0", "start_network.exit", "2")
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	before := f.waitState("vm0", sFailed)
	f.restart(LoadOptions{FirstStartThisBoot: true})
	st := f.waitState("vm0", sFailed)
	if st.Reason != before.Reason {
		t.Fatalf("reason %q, was %q", st.Reason, before.Reason)
	}
}

func TestAutostartOnlyOnFirstStartOfABoot(t *testing.T) {
	f := newFixture(t)
	f.addVM("auto", sleeper+"\nautostart = true;")
	f.addVM("manual", sleeper)
	f.sync()
	f.restart(LoadOptions{FirstStartThisBoot: false})
	// Once a reload is through, every actor has handled its recovery: an
	// autostart would have begun.
	f.sync()
	if st, _ := f.sup.Get("auto"); st.State != sStopped {
		t.Fatalf("autostart on a mere daemon restart: %+v", st)
	}
	f.restart(LoadOptions{FirstStartThisBoot: true})
	f.waitState("auto", sRunning)
	if st, _ := f.sup.Get("manual"); st.State != sStopped {
		t.Fatalf("manual VM started: %+v", st)
	}
	// A daemon restart later in the same boot restores the desired states.
	f.restart(LoadOptions{})
	f.waitPID("auto")
}

func TestFirstStartThisBootMarker(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	first, err := FirstStartThisBoot(dir)
	if err != nil || !first {
		t.Fatalf("first call: %v %v", first, err)
	}
	again, err := FirstStartThisBoot(dir)
	if err != nil || again {
		t.Fatalf("second call: %v %v", again, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot-id"), []byte("an earlier boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if after, _ := FirstStartThisBoot(dir); !after {
		t.Fatal("a marker from another boot was taken for this one")
	}
}

func TestOrphanReported(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	f.stop()
	dir := filepath.Join(f.base, "run", "vm0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A live process (this test) named by a pidfile no record claims.
	if err := os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	var st Status
	if !f.waitFor(func() bool { st, _ = f.sup.Get("vm0"); return strings.Contains(st.Reason, "orphan: process 1") }) {
		t.Fatalf("no orphan note: %+v", st)
	}
}

func readRec(t *testing.T, f *fixture, name string) Record {
	t.Helper()
	r, err := readRecord(filepath.Join(f.base, "state", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeRec(t *testing.T, f *fixture, r Record) {
	t.Helper()
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(f.base, "state", r.Name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A hook cut short by a daemon exit is not a failed hook. The exit and the
// hook's result race in the actor and the result must lose; the daemon
// here exits the moment the VM enters running, while its running hook is
// being started. Several rounds, since either could come first in any one.
func TestHookCutByDaemonExitIsNotAFailure(t *testing.T) {
	for round := range 8 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			f := newFixture(t)
			f.addVM("vm0", sleeper)
			f.sync()
			if err := f.sup.Start(ctx(t), "vm0"); err != nil {
				t.Fatal(err)
			}
			f.waitState("vm0", sRunning)
			f.restart(LoadOptions{})
			f.waitPID("vm0")
		})
	}
}

// A running hook that a daemon exit interrupted runs again once the next
// daemon has re-adopted the VM, and the VM counts as up only after it.
func TestRunningHookInterruptedRunsAgain(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	release := f.holdHook("vm0", sRunning)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning)
	pid := f.waitPID("vm0").PID
	f.restart(LoadOptions{})
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning, sRunning)
	st := f.waitPID("vm0")
	if st.PID != pid {
		t.Fatalf("hypervisor pid %d, was %d", st.PID, pid)
	}
	if st.Up() {
		t.Fatalf("up while its running hook runs again: %+v", st)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitUp("vm0")
}

// A hook that a daemon exit finds running may finish within the drain
// period; the next daemon learns its status and does not run it again.
func TestDaemonExitLetsRunningHookFinish(t *testing.T) {
	f := newFixture(t)
	f.drain = waitLimit
	f.stop()
	f.start()
	f.addVM("vm0", sleeper)
	release := f.holdHook("vm0", sStartStorage)
	f.sync()
	if err := f.sup.Start(ctx(t), "vm0"); err != nil {
		t.Fatal(err)
	}
	f.waitHooks("vm0", sStartNetwork, sStartStorage)
	// The exit waits for the hook, which is released once the exit began.
	f.cancel()
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.sup.Wait()
	<-f.subDone
	f.start()
	f.sup.Load(f.w.Initial(), LoadOptions{})
	f.waitUp("vm0")
	f.waitHooks("vm0", sStartNetwork, sStartStorage, sRunning)
}
