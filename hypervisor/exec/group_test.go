package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// family is a VM whose command starts two children: one stays in its
// process group, one leaves it (setsid), as a daemonizing VMM would.
type family struct {
	dir       string
	kid, away int
}

func familyScript(dir string) string {
	return fmt.Sprintf(`sleep 1000 & echo $! > %[1]s/kid; setsid sleep 1000 & echo $! > %[1]s/away; echo "%[2]s"; wait`, dir, marker)
}

func (f *family) read(t *testing.T) {
	t.Helper()
	f.kid = readPIDFile(t, filepath.Join(f.dir, "kid"))
	f.away = readPIDFile(t, filepath.Join(f.dir, "away"))
	for _, pid := range []int{f.kid, f.away} {
		t.Cleanup(func() {
			if st, err := process.StartTimeOf(pid); err == nil {
				if p, err := process.Attach(pid, st); err == nil {
					p.Signal(syscall.SIGKILL)
				}
			}
		})
	}
}

// pids returns the processes the VM must reach: the leader, the child
// in its group, and the one that left the group where a cgroup holds it.
func (f *family) pids(t *testing.T, h hypervisor.Handle) []int {
	pids := []int{h.PID, f.kid}
	if h.Cgroup != "" {
		pids = append(pids, f.away)
	} else {
		t.Log("no cgroup (not root, or no writable cgroup v2): the child that left the group is not checked")
	}
	return pids
}

func readPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procState returns the state letter of pid, 0 when it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

func waitStates(t *testing.T, pids []int, what string, ok func(byte) bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for _, pid := range pids {
		for !ok(procState(pid)) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d is not %s (state %q)", pid, what, procState(pid))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func gone(s byte) bool { return s == 0 || s == 'Z' }

// Pause stops every process of the VM, Resume lets all of them go on, and
// after Shutdown or Kill none is left, whether the instance started the VM
// or re-adopted it.
func TestGroupPauseStop(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: cannot observe process states")
	}
	for _, tc := range []struct {
		recovered, kill bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		recovered := tc.recovered
		t.Run(fmt.Sprintf("recovered=%v,kill=%v", tc.recovered, tc.kill), func(t *testing.T) {
			f := &family{dir: t.TempDir()}
			inst, out := run(t, shSpec(familyScript(f.dir), Options{}))
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			if err := out.WaitFor(ctx, marker); err != nil {
				t.Fatal(err)
			}
			f.read(t)
			h := inst.Handle()
			if h.PGID != h.PID {
				t.Errorf("handle pgid %d, want the pid %d", h.PGID, h.PID)
			}
			if h.Cgroup != "" && os.Geteuid() != 0 {
				t.Errorf("cgroup %s used without root", h.Cgroup)
			}
			if recovered {
				spec := shSpec(familyScript(f.dir), Options{})
				spec.RunDir, spec.Output = h.RunDir, &drivertest.Output{}
				rec, err := New().Recover(ctx, spec, roundTrip(t, h))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rec.Kill(); <-rec.Done() })
				inst = rec
			}
			pids := f.pids(t, h)
			p := inst.(hypervisor.Pauser)
			if err := p.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			waitStates(t, pids, "stopped", func(s byte) bool { return s == 'T' })
			if err := p.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			waitStates(t, pids, "running", func(s byte) bool { return s != 'T' && !gone(s) })
			// Paused again: the stop must still reach them all.
			if err := p.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			waitStates(t, pids, "stopped", func(s byte) bool { return s == 'T' })
			want := hypervisor.ExitPoweroff
			if tc.kill {
				want = hypervisor.ExitKilled
				if err := inst.Kill(); err != nil {
					t.Fatal(err)
				}
			} else if err := inst.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, inst)
			if e.Reason != want {
				t.Errorf("exit = %+v, want %s", e, want)
			}
			for _, pid := range pids {
				if s := procState(pid); !gone(s) {
					t.Errorf("process %d still there (state %q) once the exit was reported", pid, s)
				}
			}
			if h.Cgroup != "" {
				if _, err := os.Stat(h.Cgroup); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s still there: %v", h.Cgroup, err)
				}
			}
		})
	}
}

func roundTrip(t *testing.T, h hypervisor.Handle) hypervisor.Handle {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var out hypervisor.Handle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// When the command exits on its own, what it left running is killed
// before the exit is reported.
func TestLeftoversKilledAfterExit(t *testing.T) {
	dir := t.TempDir()
	inst, _ := run(t, shSpec(fmt.Sprintf(`sleep 1000 & echo $! > %s/kid; exit 0`, dir), Options{}))
	e := waitExit(t, inst)
	kid := readPIDFile(t, filepath.Join(dir, "kid"))
	if s := procState(kid); !gone(s) {
		t.Errorf("child %d still there (state %q) once the exit was reported", kid, s)
	}
	if e.Reason != hypervisor.ExitPoweroff || e.Code != 0 || !strings.Contains(e.Detail, "1 process the VM left behind was killed") {
		t.Errorf("exit = %+v, want poweroff, code 0, saying a leftover was killed", e)
	}
}

// startBare starts a VM's process as the driver does but watches nothing,
// as if the daemon that started it had died: its handle, with the group
// and cgroup (or, old=true, as handles were written before they were
// recorded).
func startBare(t *testing.T, script string, old bool) (*process.Process, hypervisor.Handle) {
	t.Helper()
	runDir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(runDir, 0o750); err != nil {
		t.Fatal(err)
	}
	cg := ""
	if !old { // as processes were started before cgroups were used
		cg = process.MakeCgroup("bare")
	}
	p, err := process.Start(process.Config{Path: "/bin/sh", Args: []string{"-c", script}, Dir: runDir, OutputPath: filepath.Join(runDir, OutputFile), Cgroup: cg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Signal(syscall.SIGKILL); <-p.Done(); p.Group().EndLeftovers() })
	h := handle(hypervisor.Spec{RunDir: runDir}, p, extra{Output: filepath.Join(runDir, OutputFile)})
	if old {
		var m map[string]any
		b, _ := json.Marshal(h)
		_ = json.Unmarshal(b, &m)
		delete(m, "pgid")
		delete(m, "cgroup")
		b, _ = json.Marshal(m)
		h = hypervisor.Handle{}
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
	}
	return p, h
}

// A VM whose command died while no daemon watched: Recover reports it
// gone, and kills what it left running first.
func TestRecoverKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	p, h := startBare(t, fmt.Sprintf(`sleep 1000 & echo $! > %s/kid; echo up; wait`, dir), false)
	kid := readPIDFile(t, filepath.Join(dir, "kid"))
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if s := procState(kid); gone(s) {
		t.Fatalf("child %d died with its parent; nothing to test", kid)
	}
	_, err := New().Recover(context.Background(), shSpec("true", Options{}), h)
	if !errors.Is(err, hypervisor.ErrGone) || !strings.Contains(err.Error(), "left behind was killed") {
		t.Errorf("Recover: err = %v, want ErrGone saying the leftover was killed", err)
	}
	if s := procState(kid); !gone(s) {
		t.Errorf("child %d still there (state %q) after Recover", kid, s)
	}
	if h.Cgroup != "" {
		if _, err := os.Stat(h.Cgroup); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s still there: %v", h.Cgroup, err)
		}
	}
}

// A handle written before the group was recorded still reads, and the
// re-adopted VM's stop reaches its whole process group.
func TestRecoverOldHandle(t *testing.T) {
	dir := t.TempDir()
	_, h := startBare(t, fmt.Sprintf(`sleep 1000 & echo $! > %s/kid; wait`, dir), true)
	if h.PGID != 0 || h.Cgroup != "" || h.Version != 1 {
		t.Fatalf("old-style handle %+v", h)
	}
	kid := readPIDFile(t, filepath.Join(dir, "kid"))
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	inst, err := New().Recover(ctx, shSpec("true", Options{}), h)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitExit(t, inst)
	if s := procState(kid); !gone(s) {
		t.Errorf("child %d still there (state %q) after the stop", kid, s)
	}
}
