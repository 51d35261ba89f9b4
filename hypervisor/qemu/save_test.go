package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/internal/testguest"
)

func (c *consoleLines) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitTick waits until the guest has ticked past n and returns the count.
func (c *consoleLines) waitTick(t *testing.T, n int) int {
	t.Helper()
	for {
		if got := testguest.LastTick(c.snapshot()); got > n {
			return got
		}
		select {
		case <-c.change:
		case <-testCtx(t).Done():
			t.Fatalf("the guest did not tick past %d", n)
		}
	}
}

// A guest saved with Save and loaded with Restore goes on where it was:
// its tick count carries on and it does not boot again. A state that does
// not fit the VM (more memory) is refused in QEMU's words.
func TestQEMUSaveRestore(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Ticking(t)
	con := newConsoleLines()
	spec := hypervisor.Spec{
		Name: "guest", RunDir: runDir(t), MemoryMB: 128, CPUs: 1, Console: con,
		Options: &Options{Accel: "tcg", Serial: true, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 quiet"},
	}
	d := &Driver{}
	inst := start(t, d, spec)
	before := con.waitTick(t, 2)

	path := filepath.Join(t.TempDir(), "guest.save")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var seen []hypervisor.SaveProgress
	if err := inst.(hypervisor.Suspender).Save(testCtx(t), f, func(p hypervisor.SaveProgress) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(seen) == 0 || seen[len(seen)-1].Status != "completed" {
		t.Errorf("progress: %+v", seen)
	}
	if by := inst.(hypervisor.Suspender).SavedBy(); !strings.HasPrefix(by, "qemu ") {
		t.Errorf("SavedBy %q", by)
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	<-inst.Done()
	saved := testguest.LastTick(con.snapshot())

	// More memory than the state was saved with: QEMU refuses it.
	bigger := spec
	bigger.MemoryMB = 160
	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if inst, err := d.Restore(testCtx(t), bigger, f); err == nil {
		inst.Kill()
		t.Fatal("a state saved with 128 MB restored into 160 MB")
	} else if !strings.Contains(err.Error(), "while loading the saved state") {
		t.Errorf("error: %v", err)
	} else {
		t.Logf("refused: %v", err)
	}
	f.Close()

	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inst, err = d.Restore(testCtx(t), spec, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Kill() })
	after := con.waitTick(t, saved)
	if after <= before {
		t.Errorf("tick %d after the restore, %d before the save", after, before)
	}
	if n := strings.Count(strings.Join(con.snapshot(), "\n"), testguest.BootLine); n != 1 {
		t.Errorf("the guest booted %d times", n)
	}
}
