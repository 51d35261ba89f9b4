package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/statemachine"
)

// A host shutdown stops every VM at once, a dependency only after what
// depends on it, forces what ignores its stop signal at the deadline, and
// reports each VM's end.
func TestShutdown(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"db":   sleeper("db", ""),
		"app":  sleeper("app", "depends = db;"),
		"idle": sleeper("idle", ""),
		// Ignores SIGTERM, the exec driver's stop signal; its stop_timeout
		// is longer than the deadline, so only the deadline ends it.
		"stubborn": "stubborn {\n hypervisor = exec;\n stop_timeout = 1h;\n exec { command = [\"/bin/sh\", \"-c\", \"trap '' TERM; exec /bin/sleep 100000\"]; }\n}\n",
	})
	for _, vm := range []string{"app", "stubborn"} {
		if code, _, errs := d.ctl(t, "start", "-w", vm); code != 0 {
			t.Fatalf("start %s: %d %s", vm, code, errs)
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
