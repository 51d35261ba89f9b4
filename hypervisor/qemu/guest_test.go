package qemu

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/internal/testguest"
)

// consoleLines collects the lines a driver copies from the console log
// and lets a test wait for one.
type consoleLines struct {
	mu     sync.Mutex
	lines  []string
	change chan struct{}
}

func newConsoleLines() *consoleLines { return &consoleLines{change: make(chan struct{}, 1)} }

func (c *consoleLines) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.lines = append(c.lines, strings.TrimRight(string(b), "\r\n"))
	c.mu.Unlock()
	select {
	case c.change <- struct{}{}:
	default:
	}
	return len(b), nil
}

// wait waits for a line containing s and returns it.
func (c *consoleLines) wait(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(3 * time.Minute)
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			if strings.Contains(l, s) {
				c.mu.Unlock()
				return l
			}
		}
		all := strings.Join(c.lines, "\n")
		c.mu.Unlock()
		select {
		case <-c.change:
		case <-timeout:
			t.Fatalf("no console line with %q; console:\n%s", s, all)
		}
	}
}

// The test guest booted with the kernel keys: its boot and what its shell
// answers reach Spec.Console from QEMU's console log, whether or not
// anyone is on the serial socket; the ACPI power button powers it off.
func TestQEMURealGuestConsoleAndPowerOff(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Build(t)
	con := newConsoleLines()
	spec := hypervisor.Spec{
		Name: "guest", RunDir: runDir(t), MemoryMB: 128, CPUs: 1, Console: con,
		Options: &Options{Accel: "tcg", Serial: true, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0"},
	}
	inst := start(t, &Driver{}, spec)
	con.wait(t, "Linux version")
	con.wait(t, testguest.ReadyLine)

	// Typed through the serial socket, answered into the log.
	conn, err := net.Dial("unix", inst.Handle().Sockets["serial"])
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, conn)
	if _, err := conn.Write([]byte("echo answer-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	con.wait(t, "answer-42")
	conn.Close()

	t0 := time.Now()
	if err := inst.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The supervisor's default stop_timeout; the guest is expected well
	// inside it (tens of milliseconds), but only a hang fails the test.
	const stopTimeout = 60 * time.Second
	select {
	case <-inst.Done():
	case <-time.After(stopTimeout):
		t.Fatal("the guest did not power off on the ACPI power button within the stop timeout")
	}
	t.Logf("powered off %v after Shutdown", time.Since(t0).Round(time.Millisecond))
	e, _ := inst.Exit()
	if e.Reason != hypervisor.ExitPoweroff || e.Detail != "guest-shutdown" || e.Code != 0 {
		t.Errorf("exit %+v, want poweroff (guest-shutdown) with status 0", e)
	}
}
