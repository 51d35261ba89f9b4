package main

import (
	"context"
	"strings"
	"testing"
	"time"
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

// TestLogFollowNewOnly: log -f -n 0 shows only lines written after it
// began, none of the log before.
func TestLogFollowNewOnly(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")})
	if code, _, errs := d.ctl(t, "start", "-w", "vm"); code != 0 {
		t.Fatalf("start: %d %s", code, errs)
	}
	_, last, _ := d.ctl(t, "log", "-n", "1", "vm")
	if last == "" {
		t.Fatal("the log is empty after a start")
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-s", d.socket, "log", "-f", "-n", "0", "vm"}, &out, &out) }()
	// Write new lines until the follow shows one: it may be in place
	// only after the first of them.
	deadline := time.Now().Add(guard)
	for !strings.Contains(out.String(), "stop requested") {
		if time.Now().After(deadline) {
			t.Fatalf("log -f -n 0 never showed a new line:\n%s", out.String())
		}
		d.ctl(t, "stop", "-w", "vm")
		d.ctl(t, "start", "-w", "vm")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("log -f -n 0 ended with %d:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), strings.TrimSpace(last)) {
		t.Fatalf("log -f -n 0 showed %q, written before it began:\n%s", last, out.String())
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
