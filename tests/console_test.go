//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/internal/testguest"
)

// guestVM is the config body of a QEMU VM booting the test guest with the
// kernel keys and the default serial console.
func guestVM(t *testing.T) string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Build(t)
	return fmt.Sprintf(`    hypervisor = qemu;
    memory = 128;
    qemu { accel = tcg; kernel = %q; initrd = %q; append = "console=ttyS0"; }
`, kernel, initrd)
}

// consoleLines returns the VM log's [console] lines, tags removed.
func (e *env) consoleLines(name string) []string {
	var out []string
	for _, l := range strings.Split(e.readLog(name), "\n") {
		if _, text, ok := strings.Cut(l, " [console] "); ok {
			out = append(out, text)
		}
	}
	return out
}

// waitConsole waits for a [console] line in the VM log containing s.
func (e *env) waitConsole(name, s string) {
	e.t.Helper()
	waitUntil(e.t, fmt.Sprintf("a console line with %q in the log of %s", s, name), func() bool {
		for _, l := range e.consoleLines(name) {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	})
}

func count(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// allocated is the space a directory's files take (blocks, not sizes: a
// trimmed capture keeps its size but gives its blocks back).
func allocated(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An exec VM printing 200 MB leaves its run directory under twice its VM
// log size, with every line up to the last copied into the log.
func TestCaptureTrimmed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const size = 200 << 20
	// 1000-byte lines, then a last one to find.
	prog := fmt.Sprintf(`yes "$(printf '%%0999d' 0)" | head -c %d; echo end-of-output`, size)
	vm := e.addVM("bigout", execVM([]string{"/bin/sh", "-c", prog}, ""))
	d := e.start()
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateStopped, 1)
	waitUntil(t, "the last line in the log", func() bool { return strings.Contains(e.readLog(vm), "end-of-output") })

	limit := int64(config.DefaultLogMaxSizeMB) << 20
	run := allocated(t, filepath.Join(e.runDir, vm))
	t.Logf("printed %d MB; run directory holds %d bytes; VM log limit %d bytes", size>>20, run, limit)
	if run >= 2*limit {
		t.Errorf("the run directory holds %d bytes after %d MB of output, want under %d (twice the VM log size)", run, size>>20, 2*limit)
	}
}

// chattyInit is a test guest's init that prints chattySize bytes of
// 1000-byte lines on its serial console, a last line to find, and powers
// off. QEMU logs its serial port a byte at a time, some 80 KB/s under
// TCG and far less on a loaded machine: three trim chunks are enough to
// see it trimmed.
const chattySize = 768 << 10

var chattyInit = fmt.Sprintf(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
yes "$(printf '%%0999d' 0)" | head -c %d > /dev/ttyS0
echo end-of-output > /dev/ttyS0
# poweroff -f does not wait for the serial port to send what its buffer
# holds (ttyS0 stays open as the console, so no close waits for it);
# stty sets the port with TCSADRAIN, which does.
stty -F /dev/ttyS0 -tostop
poweroff -f
`, chattySize)

// QEMU's captures (its serial console log and its own output) are trimmed
// as they are copied into the VM log, as the exec driver's are: a guest
// that printed chattySize leaves its run directory under half of that
// (untrimmed it would hold all of it), with the last line in the log.
func TestQEMUCaptureTrimmed(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	t.Parallel()
	kernel, initrd := testguest.Custom(t, chattyInit)
	e := newEnv(t)
	vm := e.addVM("qchat", fmt.Sprintf(`    hypervisor = qemu;
    memory = 128;
    log_max_size = 1;
    qemu { accel = tcg; kernel = %q; initrd = %q; append = "console=ttyS0 quiet"; }
`, kernel, initrd))
	d := e.start()
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateStopped, 1)
	waitUntil(t, "the last line in the log", func() bool { return strings.Contains(e.readLog(vm), "end-of-output") })
	run := allocated(t, filepath.Join(e.runDir, vm))
	t.Logf("the guest printed %d KB; the run directory holds %d bytes", chattySize>>10, run)
	if run >= chattySize/2 {
		t.Errorf("the run directory holds %d bytes after %d KB on the console, want under half of that", run, chattySize>>10)
	}
}
