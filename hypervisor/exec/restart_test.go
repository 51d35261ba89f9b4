package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// daemonEnv makes the test binary act as a short-lived daemon: it starts a
// VM in the run directory named by the variable, prints the handle and
// exits, leaving the VM running.
const daemonEnv = "VMSTATED_EXEC_TEST_DAEMON_RUNDIR"

// The VM prints "first", waits for a file named "go" in its directory,
// prints "second" and runs until SIGTERM, on which it prints "bye".
const restartScript = `trap 'echo bye; exit 0' TERM; echo first; while [ ! -e go ]; do sleep 0.05; done; echo second; while :; do sleep 1 & wait $!; done`

// daemons are the ways the test binary acts as a daemon, by the variable
// that names the run directory.
var daemons = map[string]func(runDir string) int{daemonEnv: actAsDaemon}

func TestMain(m *testing.M) {
	for env, act := range daemons {
		if dir := os.Getenv(env); dir != "" {
			os.Exit(act(dir))
		}
	}
	os.Exit(m.Run())
}

func actAsDaemon(runDir string) int {
	out := &drivertest.Output{}
	spec := hypervisor.Spec{Name: "r", RunDir: runDir, Output: out, Options: &Options{Command: []string{"/bin/sh", "-c", restartScript}}}
	inst, err := New().Start(context.Background(), spec)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, "first\n"); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	// Exit only once the follower has recorded that "first" was passed
	// on, so the next daemon must not repeat it.
	sidecar := filepath.Join(runDir, OutputFile+process.OffsetSuffix)
	for {
		b, _ := os.ReadFile(sidecar)
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, _ := strconv.Atoi(f[0]); n == len("first\n") {
				break
			}
		}
		if ctx.Err() != nil {
			fmt.Println("ERROR offset never saved")
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, _ := json.Marshal(inst.Handle())
	fmt.Printf("HANDLE %s\n", h)
	return 0 // without stopping anything, as a crashing daemon would
}

// TestRecoverAfterDaemonExit runs the whole restart story with a VM that
// is not this process's child: another process starts it and exits, the
// VM survives, this process re-adopts it, follows its output from where
// the other left off, and stops it.
func TestRecoverAfterDaemonExit(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	h := firstDaemon(t, daemonEnv, runDir)

	out := &drivertest.Output{}
	spec := hypervisor.Spec{Name: "r", RunDir: runDir, Output: out, Options: &Options{Command: []string{"/bin/sh", "-c", restartScript}}}
	inst, err := New().Recover(context.Background(), spec, h)
	if err != nil {
		t.Fatalf("Recover after the first daemon exited: %v", err)
	}
	if err := os.WriteFile(filepath.Join(runDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, "second\n"); err != nil {
		t.Fatalf("%v; output %q", err, out.String())
	}
	if err := inst.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// As root the proc connector reports the status of the process,
	// which is not our child: the script's exit 0. Elsewhere it is
	// unknown, and the stop that was asked for counts as a poweroff.
	e := waitExit(t, inst)
	if os.Geteuid() == 0 {
		if e.Reason != hypervisor.ExitPoweroff || e.Code != 0 || e.StatusUnknown {
			t.Errorf("exit = %+v, want poweroff with exit status 0", e)
		}
	} else if e.Reason != hypervisor.ExitPoweroff || !e.StatusUnknown || !strings.Contains(e.Detail, "exit status unknown") {
		t.Errorf("exit = %+v, want poweroff with an unknown status", e)
	}
	// Nothing repeated, nothing lost, all of it there once Done is closed.
	// The stop signal reaches the script's sleep too, whose end the shell
	// may report before its trap runs.
	if got := out.String(); got != "second\nbye\n" && got != "second\nTerminated\nbye\n" {
		t.Errorf("output after the restart = %q, want %q", got, "second\nbye\n")
	}
}

// firstDaemon runs this test binary as a daemon that starts a VM in runDir
// (the role env selects) and exits leaving it running, and returns the
// VM's handle, which it printed. The VM is killed when the test ends.
func firstDaemon(t *testing.T, env, runDir string) hypervisor.Handle {
	t.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+runDir)
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("first daemon: %v: %s", err, stdout)
	}
	var h hypervisor.Handle
	sc := bufio.NewScanner(strings.NewReader(string(stdout)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "HANDLE "); ok {
			if err := json.Unmarshal([]byte(rest), &h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if h.PID == 0 {
		t.Fatalf("first daemon printed no handle: %s", stdout)
	}
	t.Cleanup(func() {
		if p, err := process.Attach(h.PID, h.StartTime); err == nil {
			p.Signal(9)
		}
		groupOf(h).EndLeftovers()
	})
	return h
}
