package main

import (
	"context"
	"strings"
	"testing"
)

// TestLogFollow: log -f shows new lines until interrupted, then exits 0.
func TestLogFollow(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")})
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-s", d.socket, "log", "-f", "vm"}, &out, &out) }()
	// Once the follow is in place (the daemon has answered), act.
	if code, _, errs := d.ctl(t, "start", "-w", "vm"); code != 0 {
		t.Fatalf("start: %d %s", code, errs)
	}
	waitOutput(t, &out, "start_storage -> running")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("log -f ended with %d:\n%s", code, out.String())
	}
}

// TestWaitTimeout: wait -t gives up with exit 1, saying where the VM is.
func TestWaitTimeout(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")})
	code, _, errs := d.ctl(t, "wait", "-t", "0.2", "vm", "running")
	if code != exitFailed || !strings.Contains(errs, "has not reached running") || !strings.Contains(errs, "it is stopped") {
		t.Fatalf("wait -t: %d %q", code, errs)
	}
	// Already there: at once.
	if code, _, errs = d.ctl(t, "wait", "vm", "stopped"); code != 0 {
		t.Fatalf("wait stopped: %d %s", code, errs)
	}
}
