//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/statemachine"
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
	st := d.waitState(vm, statemachine.Running)
	e.waitHookRan(vm, "running")
	if err := os.Rename(filepath.Join(e.root, vm), filepath.Join(e.root, "renamed")); err != nil {
		t.Fatal(err)
	}
	// The hook finds its work directory relative to the config dir: the
	// same depth, so it still works from the new place.
	st = d.waitStatus(vm, "config from the new directory", func(s api.Status) bool {
		return s.Pending || s.Dir == filepath.Join(e.root, "renamed")
	})
	if st.State != statemachine.Running || st.Removed {
		t.Errorf("after the rename: %+v", st)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, statemachine.Stopped)
	e.waitHooks(vm, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
}
