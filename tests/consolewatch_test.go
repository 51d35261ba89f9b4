//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A read-only watcher whose stdin is not a terminal (/dev/null, as from a
// script or a service) keeps watching: it has nothing to type, so the end
// of its input is no reason to detach. It shows what the guest writes
// after it attached, and exits 0 when the VM stops.
func TestConsoleWatchWithoutInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a console = pty VM's terminal is taken back with pidfd_getfd, which the daemon needs root for: run as root")
	}
	t.Parallel()
	e := newEnv(t)
	gate := filepath.Join(e.work, "watch-gate")
	vm := e.addVM("watch", execVM([]string{"/bin/sh", "-c",
		"echo before-gate; while [ ! -e " + gate + " ]; do sleep 0.05; done; echo after-gate; exec sleep 1000"}, "console = pty;"))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	e.waitConsole(vm, "before-gate")

	cmd := e.ctlCmd("console", "-r", "-n", "100", vm) // stdin: /dev/null
	var out, errOut lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	detached := func() bool { return strings.Contains(errOut.String(), "detached") }
	waitUntil(t, "the replay", func() bool { return strings.Contains(out.String(), "before-gate") || detached() })
	if detached() {
		t.Fatalf("the watcher detached at the end of its input: %q", errOut.String())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "what the guest wrote after the attach", func() bool {
		return strings.Contains(out.String(), "after-gate") || detached()
	})
	if detached() {
		t.Fatalf("the watcher detached at the end of its input: %q", errOut.String())
	}
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	<-done
	if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(errOut.String(), "has stopped") {
		t.Errorf("exit %d when the VM stopped; stderr: %q", code, errOut.String())
	}
}
