package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func readPidfile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile holds %q: %v", b, err)
	}
	return pid
}

func TestLockPidfileSecondInstanceRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmstated.pid")
	h := startHolder(t, path, false)
	want := fmt.Sprintf("vmstated is already running (pid %d, pidfile %s)", h.cmd.Process.Pid, path)

	if got := readPidfile(t, path); got != h.cmd.Process.Pid {
		t.Errorf("pidfile holds %d, want holder's pid %d", got, h.cmd.Process.Pid)
	}

	// Another process.
	second := self("lock", pidfileEnv+"="+path)
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("second locker: err %v, output %q; want exit 3 (ErrRunning)", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("second locker said %q, want %q", got, want)
	}

	// This process.
	p, err := LockPidfile(path)
	if err == nil {
		p.Close()
		t.Fatal("LockPidfile succeeded while another process holds it")
	}
	if !errors.Is(err, ErrRunning) || err.Error() != want {
		t.Errorf("LockPidfile error %q (Is ErrRunning: %v), want %q", err, errors.Is(err, ErrRunning), want)
	}

	// The holder lets go: the file is removed and the lock is free.
	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pidfile after Close: %v, want it removed", err)
	}
	p, err = LockPidfile(path)
	if err != nil {
		t.Fatalf("LockPidfile after the holder exited: %v", err)
	}
	defer p.Close()
	if got := readPidfile(t, path); got != os.Getpid() {
		t.Errorf("pidfile holds %d, want %d", got, os.Getpid())
	}
}

func TestLockPidfileStaleTakenOver(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
	}{
		{"dead pid", "999999999\n"},
		{"garbage", "not a pid"},
		{"empty", ""},
		{"longer than a pid", strings.Repeat("1234567", 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vmstated.pid")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := LockPidfile(path)
			if err != nil {
				t.Fatalf("LockPidfile over a stale file: %v", err)
			}
			defer p.Close()
			if got := readPidfile(t, path); got != os.Getpid() {
				t.Errorf("pidfile holds %d, want %d", got, os.Getpid())
			}
		})
	}
}

func TestLockPidfileCrashedHolderTakenOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmstated.pid")
	h := startHolder(t, path, false)
	h.cmd.Process.Kill()
	h.cmd.Wait()
	if got := readPidfile(t, path); got != h.cmd.Process.Pid {
		t.Fatalf("crashed holder left %d in the pidfile, want %d", got, h.cmd.Process.Pid)
	}
	p, err := LockPidfile(path)
	if err != nil {
		t.Fatalf("LockPidfile after the holder was killed: %v", err)
	}
	defer p.Close()
	if got := readPidfile(t, path); got != os.Getpid() {
		t.Errorf("pidfile holds %d, want %d", got, os.Getpid())
	}
}

// Processes the daemon starts (hooks, VMs) outlive it; they must not keep
// the lock and block the next daemon.
func TestLockPidfileNotInherited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmstated.pid")
	h := startHolder(t, path, true)
	h.cmd.Process.Kill()
	h.cmd.Wait()
	if err := syscall.Kill(h.grandchild, 0); err != nil {
		t.Fatalf("the holder's child %d should still be alive: %v", h.grandchild, err)
	}
	p, err := LockPidfile(path)
	if err != nil {
		t.Fatalf("LockPidfile while the dead holder's child lives: %v", err)
	}
	p.Close()
}

// A pidfile deleted by hand and re-created by another daemon belongs to that
// daemon: closing the old lock must not remove it.
func TestPidfileCloseLeavesReplacement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmstated.pid")
	old, err := LockPidfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, path, false)
	if err := old.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := readPidfile(t, path); got != h.cmd.Process.Pid {
		t.Fatalf("pidfile holds %d after the old lock closed, want the new holder %d", got, h.cmd.Process.Pid)
	}
	if err := old.Close(); err == nil {
		t.Error("second Close succeeded, want an error")
	}
	if old.Path() != path {
		t.Errorf("Path() = %q, want %q", old.Path(), path)
	}
}

func TestLockPidfileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "vmstated.pid")
	p, err := LockPidfile(path)
	if err == nil {
		p.Close()
		t.Fatal("LockPidfile in a missing directory succeeded")
	}
	if errors.Is(err, ErrRunning) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v: want a not-exist error, not ErrRunning", err)
	}
}

func BenchmarkLockPidfile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "vmstated.pid")
	for b.Loop() {
		p, err := LockPidfile(path)
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
