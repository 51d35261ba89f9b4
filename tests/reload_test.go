//go:build linux

package tests

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// An edited config waits as pending while the VM runs and is in force once
// it stopped; an edit of a stopped VM is in force at once; a broken edit
// keeps the old config and shows the error.
func TestConfigEdit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("edit", sleeper("    description = one;\n"))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)

	e.writeConfig(vm, sleeper("    description = two;\n"))
	st = d.waitStatus(vm, "pending", func(s api.Status) bool { return s.Pending })
	if st.State != api.StateRunning || st.Description != "one" || !alive(st.PID) {
		t.Errorf("after an edit while running: %+v, want still running with the old config", st)
	}

	// A broken edit while running: the error shows, the VM runs on.
	e.writeConfig(vm, sleeper("    description = three;\n    cpus = \"x;\n"))
	st = d.waitStatus(vm, "config error", func(s api.Status) bool { return s.ConfigError != "" })
	if st.State != api.StateRunning || st.Description != "one" {
		t.Errorf("after a broken edit: %+v", st)
	}
	if !strings.Contains(st.ConfigError, "config") {
		t.Errorf("config error %q does not name the file", st.ConfigError)
	}
	e.writeConfig(vm, sleeper("    description = two;\n"))
	d.waitStatus(vm, "config error cleared", func(s api.Status) bool { return s.ConfigError == "" })

	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	st = d.waitStatus(vm, "new config in force", func(s api.Status) bool { return !s.Pending })
	if st.Description != "two" {
		t.Errorf("after stop: description %q, want the pending config's two", st.Description)
	}

	// Stopped: an edit is in force at once.
	e.writeConfig(vm, sleeper("    description = four;\n    maxrestart = 7;\n"))
	st = d.waitStatus(vm, "edit applied", func(s api.Status) bool { return s.Description == "four" })
	if st.Pending || st.MaxRestart != 7 {
		t.Errorf("after an edit while stopped: %+v", st)
	}
}

// A VM whose directory is removed while it runs keeps running, marked
// removed, and is dropped once stopped; a stopped VM's removal drops it at
// once.
func TestVMDirRemovedWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("gone", sleeper(""))
	idle := e.addVM("idle", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	e.waitLastHook(vm, "running")

	if err := os.RemoveAll(filepath.Join(e.root, vm)); err != nil {
		t.Fatal(err)
	}
	st = d.waitStatus(vm, "marked removed", func(s api.Status) bool { return s.Removed })
	if st.State != api.StateRunning || !alive(st.PID) {
		t.Errorf("after removing its directory: %+v, want it still running", st)
	}

	if err := os.RemoveAll(filepath.Join(e.root, idle)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopped VM to be dropped", func() bool {
		_, err := d.c.Get(ctx(t), idle)
		return errors.Is(err, api.ErrNotFound)
	})

	ev := d.events(vm)
	d.do(vm, api.ActionStop)
	waitGone(t, st.PID)
	waitUntil(t, "the removed VM to be dropped", func() bool {
		_, err := d.c.Get(ctx(t), vm)
		return errors.Is(err, api.ErrNotFound)
	})
	ev.waitEnter(t, api.StateStopped, 1)
	if exists(filepath.Join(e.stateDir, vm+".json")) {
		t.Errorf("state record of the dropped VM is still there")
	}
	// Its hooks went with its directory: only those that ran before.
	if recs := states(e.records(vm)); strings.Join(recs, " ") != "start_network start_storage running" {
		t.Errorf("hooks of the removed VM: %v", recs)
	}
}

// A broken config next to good ones: the daemon runs the good ones and
// shows the broken one with its error; vmstated -n lists every problem.
func TestBrokenConfigNextToGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := e.addVM("good", sleeper(""))
	bad := e.addVM("bad", sleeper("    cpus = \"2;\n"))
	worse := e.addVM("worse", sleeper("    hypervisor = vmware;\n    maxrestart = -1;\n"))

	out, errOut, code := e.run(vmstatedBin, "-n", "-c", e.root)
	if code != 1 {
		t.Errorf("vmstated -n on a broken root exited %d, want 1\n%s%s", code, out, errOut)
	}
	lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(e.root) + `/([^/]+)/config:\d+:\d+: .+`)
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if m := lineRE.FindStringSubmatch(line); m != nil {
			seen[m[1]]++
		}
	}
	if seen[bad] < 1 || seen[worse] < 2 || seen[good] != 0 {
		t.Errorf("vmstated -n problems per VM %v, want 1+ for %s, 2+ for %s (one a line, file:line:col), none for %s; it said:\n%s",
			seen, bad, worse, good, errOut)
	}

	d := e.start()
	for _, name := range []string{bad, worse} {
		st := d.get(name)
		if st.ConfigError == "" || st.State != api.StateStopped {
			t.Errorf("broken VM %s: %+v, want stopped with its config error", name, st)
		}
		if _, err := d.c.Start(ctx(t), name); !errors.Is(err, api.ErrConflict) {
			t.Errorf("start of broken %s: %v, want a conflict (invalid config)", name, err)
		}
	}
	d.do(good, api.ActionStart)
	st := d.waitState(good, api.StateRunning)
	d.do(good, api.ActionStop)
	d.waitState(good, api.StateStopped)
	waitGone(t, st.PID)

	// Fixing the broken config makes the VM usable.
	e.writeConfig(bad, sleeper("    cpus = 2;\n"))
	st = d.waitStatus(bad, "valid", func(s api.Status) bool { return s.ConfigError == "" })
	if st.CPUs != 2 {
		t.Errorf("fixed VM: %+v", st)
	}
}
