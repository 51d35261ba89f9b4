//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A running VM's directory renamed (the name comes from the section key,
// so the VM is the same): the VM keeps running and its teardown hooks,
// now in the new directory, still run when it stops.
func TestVMDirRenamedWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("moved", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)
	e.waitHookRan(vm, "running")
	if err := os.Rename(filepath.Join(e.root, vm), filepath.Join(e.root, "renamed")); err != nil {
		t.Fatal(err)
	}
	// The hook finds its work directory relative to the config dir: the
	// same depth, so it still works from the new place.
	st = d.waitStatus(vm, "config from the new directory", func(s api.Status) bool {
		return s.Pending || s.Dir == filepath.Join(e.root, "renamed")
	})
	if st.State != api.StateRunning || st.Removed {
		t.Errorf("after the rename: %+v", st)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	e.waitHooks(vm, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
}

// A second directory claiming a running VM's name: both are errors; the
// running VM keeps its config and runs on, showing the error; removing the
// duplicate clears it, and the VM stops with its own hooks.
func TestDuplicateNameWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("twin", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)

	dup := filepath.Join(e.root, "impostor")
	if err := os.Mkdir(dup, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile(filepath.Join(dup, "config"), vm+" {\n"+execVM([]string{"/bin/false"}, "")+"}\n")
	st = d.waitStatus(vm, "a config error", func(s api.Status) bool { return s.ConfigError != "" })
	if st.State != api.StateRunning || !alive(st.PID) {
		t.Errorf("after a duplicate appeared: %+v", st)
	}
	if list, err := d.c.List(ctx(t)); err != nil || len(list) != 1 {
		t.Errorf("list after a duplicate appeared: %+v (%v), want the one VM", list, err)
	}
	if err := os.RemoveAll(dup); err != nil {
		t.Fatal(err)
	}
	st = d.waitStatus(vm, "the error cleared", func(s api.Status) bool { return s.ConfigError == "" })
	if st.State != api.StateRunning || st.Removed || st.Dir != filepath.Join(e.root, vm) {
		t.Errorf("after the duplicate went: %+v", st)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	e.waitHooks(vm, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
}
