//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vmstated/vmstated/api"
)

var (
	bhyveOnce     sync.Once
	bhyveBin      string
	bhyveBuildErr error
)

// bhyveStandin builds the bhyve driver's stand-in (hypervisor/bhyve's
// testdata) as bhyve and bhyvectl, once per run.
func bhyveStandin(t *testing.T) (bhyve, bhyvectl string) {
	t.Helper()
	bhyveOnce.Do(func() {
		dir := filepath.Join(base, "bhyve-standin")
		bin := filepath.Join(dir, "bhyve")
		if b, err := exec.Command("go", "build", "-o", bin, "../hypervisor/bhyve/testdata/standin").CombinedOutput(); err != nil {
			bhyveBuildErr = fmt.Errorf("building the bhyve stand-in: %v\n%s", err, b)
			return
		}
		if err := os.Link(bin, filepath.Join(dir, "bhyvectl")); err != nil {
			bhyveBuildErr = err
			return
		}
		bhyveBin = bin
	})
	if bhyveBuildErr != nil {
		t.Fatal(bhyveBuildErr)
	}
	return bhyveBin, filepath.Join(filepath.Dir(bhyveBin), "bhyvectl")
}

// A bhyve guest re-adopted after a daemon restart is no longer the
// daemon's child; its exit status (bhyve's: 1 powered off, 0 rebooted, 3
// crashed) still decides what follows. A guest's poweroff after a daemon
// restart stops the VM instead of rebooting it, and a crash restarts it.
func TestReadoptedBhyveExitStatus(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the exit status of a process that is not the daemon's child comes from the proc connector, which older kernels give to root only")
	}
	bhyve, bhyvectl := bhyveStandin(t)
	for _, tc := range []struct {
		short  string
		code   int
		reason string
	}{
		{"bhyveoff", 1, "poweroff"},
		{"bhyvecrash", 3, "crash"},
	} {
		t.Run(tc.short, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fifo := exitFifo(t, e, tc.short)
			// The stand-in waits for its exit status on the fifo, as a
			// guest runs until it powers off or crashes.
			cfgFile := filepath.Join(e.work, tc.short+".bhyve.conf")
			if err := os.WriteFile(cfgFile, []byte("standin.exitfifo="+fifo+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			vm := e.addVM(tc.short, fmt.Sprintf("    hypervisor = bhyve;\n    memory = 256;\n    configfile = %q;\n    maxrestart = 3;\n    maxrestarttime = 1h;\n    bhyve { binary = %q; bhyvectl = %q; }\n",
				cfgFile, bhyve, bhyvectl))
			d2, got := readoptedExit(t, e, vm, fifo, tc.code, tc.reason)
			if x := got.LastExit; x == nil || x.Reason != tc.reason || x.Code != tc.code || x.StatusUnknown {
				t.Errorf("last exit = %+v, want %s with code %d", x, tc.reason, tc.code)
			}
			if tc.reason == "crash" {
				// The relaunched stand-in waits on the fifo again, deaf to
				// the stop signal while it does: force it.
				if _, err := d2.c.Do(ctx(t), vm, api.ActionStop, &api.StopOptions{Force: true}); err != nil {
					t.Fatal(err)
				}
				d2.waitState(vm, api.StateStopped)
			}
		})
	}
}
