package server_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// TestQEMU drives a real QEMU (TCG, no disk: the firmware runs) through
// the API for what only QEMU can do: info, screenshot, reset, NMI.
func TestQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	d := startDaemon(t, map[string]string{
		"q": "q {\n hypervisor = qemu;\n memory = 64;\n cpus = 1;\n stop_timeout = 2s;\n qemu { accel = tcg; vga = std; serial = false; }\n}\n",
	}, server.Options{})
	ctx := context.Background()
	c := d.client
	d.run("q")

	info, err := c.Info(ctx, "q")
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if len(info) == 0 {
		t.Fatal("info is empty")
	}
	t.Logf("info keys: %v", keys(info))

	var img bytes.Buffer
	format, err := c.Screenshot(ctx, "q", &img)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	switch format {
	case "png":
		if !bytes.HasPrefix(img.Bytes(), []byte("\x89PNG")) {
			t.Fatalf("png screenshot starts with %q", img.Bytes()[:8])
		}
	case "ppm":
		if !bytes.HasPrefix(img.Bytes(), []byte("P6")) {
			t.Fatalf("ppm screenshot starts with %q", img.Bytes()[:8])
		}
	default:
		t.Fatalf("screenshot format %q", format)
	}

	if _, err := c.Do(ctx, "q", api.ActionPause, nil); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if _, err := c.Do(ctx, "q", api.ActionUnpause, nil); err != nil {
		t.Fatalf("unpause: %v", err)
	}
	// A reset relaunches the VM (under -no-reboot QEMU ends on a reset).
	if _, err := c.Do(ctx, "q", api.ActionReset, nil); err != nil {
		t.Fatalf("reset: %v", err)
	}
	d.waitState("q", api.StateRunning)
	// With no operating system the firmware answers an NMI with a reset,
	// which ends QEMU (-no-reboot), sometimes before it replies: the NMI
	// must be supported, and the daemon must carry on.
	if _, err := c.Do(ctx, "q", api.ActionNMI, nil); errors.Is(err, api.ErrNotSupported) {
		t.Fatalf("nmi: %v", err)
	}
	if _, err := c.Get(ctx, "q"); err != nil {
		t.Fatalf("status after nmi: %v", err)
	}
	if _, err := c.Stop(ctx, "q", api.StopOptions{}); err != nil && !isConflict(err) {
		t.Fatalf("stop: %v", err)
	}
	d.waitState("q", api.StateStopped, api.StateFailed)

	// Stopped: info and screenshot are not allowed now (409), not
	// unsupported.
	_, err = c.Info(ctx, "q")
	apiError(t, err, http.StatusConflict, api.CodeNotAllowed)
}

func isConflict(err error) bool {
	ae, ok := err.(*api.Error)
	return ok && ae.Status == http.StatusConflict
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestActionTimeout: work on the daemon's side that does not finish, here
// an info of a QEMU that cannot answer (stopped with SIGSTOP), gets 504
// once the action timeout has passed, and the daemon carries on once QEMU
// runs again.
func TestActionTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	d := startDaemon(t, map[string]string{
		"q": "q {\n hypervisor = qemu;\n memory = 64;\n cpus = 1;\n stop_timeout = 2s;\n qemu { accel = tcg; serial = false; }\n}\n",
	}, server.Options{ActionTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	c := d.client
	d.run("q")
	st, err := c.Get(ctx, "q")
	if err != nil || st.PID == 0 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = syscall.Kill(st.PID, syscall.SIGCONT) }
	t.Cleanup(cont)
	var ae *api.Error
	if _, err := c.Info(ctx, "q"); !errors.As(err, &ae) || ae.Status != http.StatusGatewayTimeout || ae.Code != api.CodeTimeout {
		t.Fatalf("info of a stopped QEMU: %v, want 504 %s", err, api.CodeTimeout)
	}
	cont()
	if _, err := c.Info(ctx, "q"); err != nil {
		t.Fatalf("info once QEMU runs again: %v", err)
	}
	if _, err := c.Stop(ctx, "q", api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitState("q", api.StateStopped)
}
