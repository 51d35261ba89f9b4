package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/statemachine"
)

// A host shutdown stops every VM at once, a dependency only after what
// depends on it, forces what ignores its stop signal at the deadline, and
// reports each VM's end.
func TestShutdown(t *testing.T) {
	// Ignores SIGTERM, the exec driver's stop signal, and says so in the
	// file ready; its stop_timeout is longer than the deadline, so only
	// the deadline ends it.
	ready := filepath.Join(t.TempDir(), "ready")
	d := startDaemon(t, map[string]string{
		"db":       sleeper("db", ""),
		"app":      sleeper("app", "depends = db;"),
		"idle":     sleeper("idle", ""),
		"stubborn": fmt.Sprintf("stubborn {\n hypervisor = exec;\n stop_timeout = 1h;\n exec { command = [\"/bin/sh\", \"-c\", \"trap '' TERM; : > %s; exec /bin/sleep 100000\"]; }\n}\n", ready),
	})
	for _, vm := range []string{"app", "stubborn"} {
		if code, _, errs := d.ctl(t, "start", "-w", vm); code != 0 {
			t.Fatalf("start %s: %d %s", vm, code, errs)
		}
	}
	// Not before the guest ignores SIGTERM, or the deadline never comes.
	for deadline := time.Now().Add(guard); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stubborn guest never set its trap")
		}
	}
	sub := d.sup.Bus().Subscribe(d.sup.Bus().Seq())
	defer sub.Close()

	code, out, errs := d.ctl(t, "-o", "json", "shutdown", "-t", "1.5")
	if code != 0 {
		t.Fatalf("shutdown: exit %d: %s%s", code, out, errs)
	}
	var rep shutdownReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("shutdown -o json: %v: %s", err, out)
	}
	got := map[string]shutdownVM{}
	for _, r := range rep.VMs {
		got[r.Name] = r
	}
	want := map[string]string{"app": endPoweredOff, "db": endPoweredOff, "idle": endAlreadyStopped, "stubborn": endForcedDeadline}
	for name, res := range want {
		if got[name].Result != res {
			t.Errorf("%s: %+v, want %s", name, got[name], res)
		}
	}
	if len(rep.VMs) != len(want) {
		t.Errorf("report has %d VMs, want %d: %+v", len(rep.VMs), len(want), rep.VMs)
	}
	if s := got["stubborn"]; s.Exit == nil || s.Exit.Reason != "killed" || !s.Forced {
		t.Errorf("stubborn: %+v, want killed by a forced stop", s)
	}
	for _, vm := range []string{"app", "db", "stubborn"} {
		if st, _ := d.sup.Get(vm); st.State != statemachine.Stopped {
			t.Errorf("%s after shutdown: %s", vm, st.State)
		}
	}

	// The order: app rested before db began to stop.
	var appStopped, dbStopping uint64
	for appStopped == 0 || dbStopping == 0 {
		e := <-sub.C()
		switch {
		case e.VM == "app" && e.To == statemachine.Stopped:
			appStopped = e.Seq
		case e.VM == "db" && e.To == statemachine.Stopping:
			dbStopping = e.Seq
		}
	}
	if dbStopping < appStopped {
		t.Errorf("db began to stop (event %d) before app, which depends on it, had stopped (event %d)", dbStopping, appStopped)
	}

	// Nothing left to do: every VM is already stopped; the table says so.
	code, out, errs = d.ctl(t, "shutdown")
	if code != 0 || !strings.Contains(out, "4 already stopped") {
		t.Errorf("second shutdown: exit %d:\n%s%s", code, out, errs)
	}
}

// A VM whose teardown fails is reported failed, and the command exits 1
// naming it; a start still waiting for its dependencies is cancelled.
func TestShutdownReportsFailure(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"broken": sleeper("broken", ""),
		"db":     sleeper("db", ""),
		"app":    sleeper("app", "depends = db;"),
	})
	if err := os.WriteFile(filepath.Join(d.root, "broken", "stop_network"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// db's start hangs in its start_network hook for a while, so app
	// waits for it, stopped but wanting to run.
	if err := os.WriteFile(filepath.Join(d.root, "db", "start_network"), []byte("#!/bin/sh\nsleep 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := d.ctl(t, "start", "-w", "broken"); code != 0 {
		t.Fatalf("start broken: %d %s", code, errs)
	}
	if code, _, errs := d.ctl(t, "start", "app"); code != 0 {
		t.Fatalf("start app: %d %s", code, errs)
	}
	// app starts db, in the background: wait until db is starting.
	d.waitState(t, "db", statemachine.StartNetwork)
	code, out, errs := d.ctl(t, "shutdown", "-t", "30")
	t.Logf("shutdown:\n%s%s", out, errs)
	if code != exitFailed || !strings.Contains(errs, "not every VM stopped: broken;") {
		t.Errorf("shutdown: exit %d, stderr %q; want 1 naming broken", code, errs)
	}
	for _, want := range []string{
		"\nbroken  failed ", "\napp     stopped ", "\ndb      stopped ",
		"shutdown: 3 VM(s) in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if st, _ := d.sup.Get("app"); st.State != statemachine.Stopped || st.Desired != statemachine.Stopped {
		t.Errorf("app after shutdown: %s, desired %s", st.State, st.Desired)
	}
}
