//go:build linux

package tests

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A hook that hangs holds up its own VM only: another VM starts and stops
// meanwhile, and status answers. A stop asked for during the hung step takes
// effect once it ends.
func TestHangingHookBlocksOnlyItsVM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := e.addVM("slow", sleeper(""))
	fast := e.addVM("fast", sleeper(""))
	e.control(slow, "start_storage", "hang", true)
	d := e.start()

	d.do(slow, api.ActionStart)
	waitUntil(t, "the start_storage hook of "+slow+" to hang", func() bool {
		return exists(filepath.Join(e.work, slow+".start_storage.hanging"))
	})

	d.do(fast, api.ActionStart)
	st := d.waitState(fast, api.StateRunning)
	d.do(fast, api.ActionStop)
	d.waitState(fast, api.StateStopped)
	waitGone(t, st.PID)

	// Status of everything, through the client and through vmstatedctl.
	list, err := d.c.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[slices.IndexFunc(list, func(s api.Status) bool { return s.Name == slow })].State != api.StateStartStorage {
		t.Errorf("status while a hook hangs: %+v", list)
	}
	out, errOut, code := e.ctl("-o", "json", "status")
	var ctlList []api.Status
	if code != 0 || json.Unmarshal([]byte(out), &ctlList) != nil || len(ctlList) != 2 {
		t.Errorf("vmstatedctl -o json status exited %d: %s%s", code, out, errOut)
	}

	// A stop during the hung step is accepted and acted on when it ends.
	d.do(slow, api.ActionStop)
	if st := d.get(slow); st.State != api.StateStartStorage {
		t.Errorf("stop while start_storage hangs moved the VM to %s", st.State)
	}
	e.control(slow, "start_storage", "release", true)
	d.waitState(slow, api.StateStopped)
	e.waitHooks(slow, "start_network", "start_storage", "stop_storage", "stop_network", "stopped")
	if st := d.get(slow); st.PID != 0 {
		t.Errorf("aborted start left a hypervisor: %+v", st)
	}
}

// Starting a VM starts the VMs it depends on first, each running before the
// next begins; vmstatedctl stop -a stops dependants first.
func TestDependsOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	db := e.addVM("db", sleeper(""))
	app := e.addVM("app", sleeper("    depends = [ \""+db+"\" ];\n"))
	web := e.addVM("web", sleeper("    depends = \""+app+"\";\n"))
	d := e.start()

	all := d.events("")
	d.do(web, api.ActionStart)
	for _, vm := range []string{db, app, web} {
		d.waitState(vm, api.StateRunning)
	}
	// A VM begins to start only once the VM it depends on runs: its
	// hypervisor is up after its start hooks succeeded. (Its running hook
	// is a notice that may still be under way.)
	evs := all.waitFor(t, web+" running", func(evs []api.Event) bool {
		return slices.ContainsFunc(evs, func(ev api.Event) bool { return ev.VM == web && ev.To == api.StateRunning })
	})
	seq := func(vm string, to api.State) int {
		return slices.IndexFunc(evs, func(ev api.Event) bool { return ev.VM == vm && ev.To == to })
	}
	for _, p := range [][2]string{{db, app}, {app, web}} {
		if i, j := seq(p[0], api.StateRunning), seq(p[1], api.StateStartNetwork); i < 0 || j < 0 || i > j {
			t.Errorf("%s entered start_network before %s was running: %v", p[1], p[0], evs)
		}
	}
	recs := e.allRecords()
	before := func(a, b string) {
		t.Helper()
		i, j := slices.Index(recs, a), slices.Index(recs, b)
		if i < 0 || j < 0 || i > j {
			t.Errorf("want hook %q before %q in\n%s", a, b, strings.Join(recs, "\n"))
		}
	}
	before(db+" start_storage", app+" start_network")
	before(app+" start_storage", web+" start_network")

	if out, errOut, code := e.ctl("stop", "-a"); code != 0 {
		t.Fatalf("vmstatedctl stop -a exited %d: %s%s", code, out, errOut)
	}
	for _, vm := range []string{db, app, web} {
		if st := d.get(vm); st.State != api.StateStopped {
			t.Errorf("%s after stop -a: %s", vm, st.State)
		}
	}
	recs = e.allRecords()
	before(web+" stop_network", app+" stopping")
	before(app+" stop_network", db+" stopping")
}

// A VM that depends on a failing VM does not start.
func TestDependsOnFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	db := e.addVM("bad", sleeper(""))
	app := e.addVM("dep", sleeper("    depends = "+db+";\n"))
	e.control(db, "start_network", "fail", true)
	d := e.start()
	d.do(app, api.ActionStart)
	st := d.waitState(app, api.StateFailed)
	if !strings.Contains(st.Reason, db) {
		t.Errorf("failure reason %q does not name %s", st.Reason, db)
	}
	d.waitState(db, api.StateFailed)
	if recs := e.records(app); len(recs) > 0 && recs[0].state != "failed" {
		t.Errorf("hooks of %s ran although its dependency failed: %v", app, recs)
	}
}

// A hook that leaves a process behind holding its output open has still
// finished when it exits: the VM goes on (waiting for the output to close
// would run into hook_timeout and fail the step).
func TestHookBackgroundChild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("bgchild", sleeper("    hook_timeout = 5;\n"))
	e.control(vm, "start_network", "bg", true)
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	e.waitHookRan(vm, "running")
	if len(e.hookProcs()) == 0 {
		t.Errorf("the hook's background process is gone; the test proves nothing")
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
}

// A stop while a VM waits for the VM it depends on cancels its start: it
// stays stopped once the dependency is up.
func TestStopWhileWaitingForDependency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	db := e.addVM("slowdb", sleeper(""))
	app := e.addVM("waiter", sleeper("    depends = "+db+";\n"))
	e.control(db, "start_network", "hang", true)
	d := e.start()
	d.do(app, api.ActionStart)
	waitUntil(t, db+" to hang in start_network", func() bool {
		return exists(filepath.Join(e.work, db+".start_network.hanging"))
	})
	if st := d.get(app); st.State != api.StateStopped || st.Desired != api.StateRunning {
		t.Errorf("%s while its dependency starts: %+v", app, st)
	}
	// The wait is a field of the status, not a state to decode.
	if st := d.get(app); len(st.WaitingFor) != 1 || st.WaitingFor[0] != db {
		t.Errorf("%s while its dependency starts: waiting_for %v, want [%s]", app, st.WaitingFor, db)
	}
	out, _, _ := e.ctl("status", app)
	said := false
	for _, line := range strings.Split(out, "\n") {
		said = said || strings.HasPrefix(strings.TrimSpace(line), "waiting for") && strings.Contains(line, db)
	}
	if !said {
		t.Errorf("vmstatedctl status does not say what %s waits for:\n%s", app, out)
	}
	d.do(app, api.ActionStop)
	e.control(db, "start_network", "release", true)
	st := d.waitState(db, api.StateRunning)
	e.waitHookRan(db, "running")
	appSt := d.get(app)
	if appSt.State != api.StateStopped || appSt.Desired != api.StateStopped || len(appSt.WaitingFor) != 0 {
		t.Errorf("%s after its cancelled start: %+v", app, appSt)
	}
	if recs := e.records(app); len(recs) != 0 {
		t.Errorf("hooks of %s ran after its start was cancelled: %v", app, states(recs))
	}
	d.do(db, api.ActionStop)
	d.waitState(db, api.StateStopped)
	waitGone(t, st.PID)
	if recs := e.records(app); len(recs) != 0 {
		t.Errorf("hooks of %s ran after its start was cancelled: %v", app, states(recs))
	}
}
