//go:build linux

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A start and a stop run every hook once, in lifecycle order, each with the
// documented arguments, working directory, stdin and environment.
func TestFullCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("cycle", execVM([]string{"/bin/sh", "-c", "echo guest console line; exec /bin/sleep 1000"}, "")+
		"    maxrestart = 2;\n    e2e_tag = blue;\n    description = \"cycle test\";\n")
	d := e.start()
	ev := d.events(vm)

	// vmstatedctl start -w returns once the VM runs.
	if out, errOut, code := e.ctl("start", "-w", vm); code != 0 {
		t.Fatalf("vmstatedctl start -w exited %d: %s%s", code, out, errOut)
	}
	out, errOut, code := e.ctl("-o", "json", "status", vm)
	if code != 0 {
		t.Fatalf("vmstatedctl status exited %d: %s", code, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if st.State != api.StateRunning || st.PID <= 0 || !alive(st.PID) || st.Hypervisor != "exec" || st.Description != "cycle test" {
		t.Fatalf("status after start -w: %+v, want running with a live pid", st)
	}
	pid := st.PID
	e.waitHooks(vm, "start_network", "start_storage", "running")

	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	ev.waitEnter(t, api.StateStopped, 1)
	calls := e.waitHooks(vm, "start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "stopped")
	waitGone(t, pid)
	if got := strings.Join(ev.path(), " "); got != "start_network start_storage running stopping stop_storage stop_network stopped" {
		t.Errorf("transitions: %s", got)
	}
	st = d.get(vm)
	if st.State != api.StateStopped || st.PID != 0 {
		t.Errorf("status after stop: %+v", st)
	}

	prev := map[string]string{
		"start_network": "stopped", "start_storage": "start_network", "running": "start_storage",
		"stopping": "running", "stop_storage": "stopping", "stop_network": "stop_storage", "stopped": "stop_network",
	}
	// The hypervisor runs while running and stopping begin.
	withPID := map[string]bool{"running": true, "stopping": true}
	dir := filepath.Join(e.root, vm)
	for _, c := range calls {
		if c.prev != prev[c.state] {
			t.Errorf("hook %s: VMSTATED_PREVIOUS_STATE=%q, want %q", c.state, c.prev, prev[c.state])
		}
		if c.restarts != "0" {
			t.Errorf("hook %s: VMSTATED_RESTARTS=%q, want 0", c.state, c.restarts)
		}
		if withPID[c.state] != (c.pid == strconv.Itoa(pid)) {
			t.Errorf("hook %s: VMSTATED_PID=%s (hypervisor pid %d)", c.state, c.pid, pid)
		}
		env := e.hookEnv(vm, c.state)
		for k, want := range map[string]string{
			"VMSTATED_NAME":           vm,
			"VMSTATED_STATE":          c.state,
			"VMSTATED_CONFIG_DIR":     dir,
			"VMSTATED_CFG_E2E_TAG":    "blue",
			"VMSTATED_CFG_MAXRESTART": "2",
			"cwd":                     dir,
			"stdin":                   "/dev/null",
			"argc":                    "2",
			"PATH":                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		} {
			if env[k] != want {
				t.Errorf("hook %s: %s=%q, want %q", c.state, k, env[k], want)
			}
		}
		for _, k := range []string{"NOTIFY_SOCKET", "HOME", "XDG_RUNTIME_DIR", "GORACE"} {
			if v, ok := env[k]; ok {
				t.Errorf("hook %s inherited the daemon's %s=%s", c.state, k, v)
			}
		}
	}
	if r := calls[0].reason; r == "" {
		t.Errorf("start_network hook got no VMSTATED_REASON")
	}

	// The VM's log holds the transitions, the hooks' output and the VM
	// process's output.
	waitUntil(t, "the log to hold the stopped hook's output", func() bool {
		return strings.Contains(e.readLog(vm), "hook stopped of "+vm+" says hello")
	})
	log, errOut, code := e.ctl("log", vm)
	if code != 0 {
		t.Errorf("vmstatedctl log exited %d: %s", code, errOut)
	}
	for _, want := range []string{"stopped -> start_network", "stop_network -> stopped", "hook running of " + vm + " says hello", "guest console line"} {
		if !strings.Contains(log, want) {
			t.Errorf("log of %s lacks %q:\n%s", vm, want, log)
		}
	}
}

// A failing hook at each step ends the VM in failed after the teardown
// hooks of the steps that completed; the reason names the hook; failreset
// returns it to stopped.
func TestHookFailureTeardown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		short, fail string
		action      api.Action // asked for once the VM runs, to reach the failing step
		want        []string
		reason      string
	}{
		{"f-net", "start_network", "", []string{"start_network", "failed"}, "start_network"},
		{"f-stor", "start_storage", "", []string{"start_network", "start_storage", "stop_network", "failed"}, "start_storage"},
		{"f-launch", "", "", []string{"start_network", "start_storage", "stop_storage", "stop_network", "failed"}, "launch failed"},
		{"f-run", "running", "", []string{"start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "failed"}, "running"},
		{"f-stopping", "stopping", api.ActionStop, []string{"start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "failed"}, "stopping"},
		{"f-sstor", "stop_storage", api.ActionStop, []string{"start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "failed"}, "stop_storage"},
		{"f-snet", "stop_network", api.ActionStop, []string{"start_network", "start_storage", "running", "stopping", "stop_storage", "stop_network", "failed"}, "stop_network"},
		{"f-rsting", "restarting", api.ActionRestart, []string{"start_network", "start_storage", "running", "restarting", "stop_storage", "stop_network", "failed"}, "restarting"},
		{"f-paused", "paused", api.ActionPause, []string{"start_network", "start_storage", "running", "paused", "stopping", "stop_storage", "stop_network", "failed"}, "paused"},
		{"f-rsted", "restarted", api.ActionRestart, []string{"start_network", "start_storage", "running", "restarting", "restarted", "stopping", "stop_storage", "stop_network", "failed"}, "restarted"},
	}
	names := map[string]string{}
	for _, tc := range cases {
		body := sleeper("")
		if tc.fail == "" {
			body = execVM([]string{"/nonexistent/hypervisor"}, "")
		}
		names[tc.short] = e.addVM(tc.short, body)
		if tc.fail != "" {
			e.control(names[tc.short], tc.fail, "fail", true)
		}
	}
	d := e.start()
	for _, tc := range cases {
		t.Run(tc.short, func(t *testing.T) {
			t.Parallel()
			vm := names[tc.short]
			d.do(vm, api.ActionStart)
			if tc.action != "" {
				st := d.waitState(vm, api.StateRunning)
				e.waitHookRan(vm, "running")
				defer waitGone(t, st.PID)
				d.do(vm, tc.action)
			}
			st := d.waitState(vm, api.StateFailed)
			calls := e.waitHooks(vm, tc.want...)
			if !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("failure reason %q does not name %q", st.Reason, tc.reason)
			}
			if tc.fail != "" && !strings.Contains(st.Reason, "7") {
				t.Errorf("failure reason %q does not give the hook's exit status 7", st.Reason)
			}
			if st.PID != 0 {
				t.Errorf("failed VM still shows pid %d", st.PID)
			}
			waitUntil(t, "no process of "+vm+" left", func() bool { return len(e.vmProcs(vm)) == 0 })
			if r := calls[len(calls)-1].reason; !strings.Contains(r, tc.reason) {
				t.Errorf("failed hook's VMSTATED_REASON %q does not name %q", r, tc.reason)
			}
			if tc.fail != "" && !strings.Contains(e.readLog(vm), "hook "+tc.fail+" of "+vm+" fails on purpose") {
				t.Errorf("log lacks the failing hook's stderr")
			}
			// A failed VM refuses start until failreset.
			if _, err := d.c.Start(ctx(t), vm); !errors.Is(err, api.ErrConflict) {
				t.Errorf("start of a failed VM: %v, want a conflict", err)
			}
			d.do(vm, api.ActionFailReset)
			st = d.waitState(vm, api.StateStopped)
			if st.Reason != "" && strings.Contains(st.Reason, "fail on purpose") {
				t.Errorf("failure reason kept after failreset: %q", st.Reason)
			}
		})
	}
}

// A VM whose process keeps crashing is restarted exactly maxrestart times,
// then torn down into failed; failreset clears the history and the VM
// starts cleanly.
func TestCrashLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	crash := filepath.Join(e.work, "crash")
	e.writeFile(crash, "")
	script := fmt.Sprintf("if [ -e %s ]; then exit 3; fi; exec /bin/sleep 1000", crash)
	vm := e.addVM("crash", execVM([]string{"/bin/sh", "-c", script}, "")+"    maxrestart = 2;\n    maxrestarttime = 1h;\n")
	d := e.start()
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateFailed, 1)
	st := d.waitState(vm, api.StateFailed)
	// A crash may come before or after a relaunched VM is back in running,
	// so running hooks may or may not sit between the restarts.
	calls := e.waitLastHook(vm, "failed")
	var path []string
	restarts := 0
	for _, c := range calls {
		if c.state == "running" && len(path) > 3 {
			continue
		}
		path = append(path, c.state)
		if c.state == "restarting" {
			restarts++
			if c.restarts != strconv.Itoa(restarts) {
				t.Errorf("restarting hook #%d: VMSTATED_RESTARTS=%s", restarts, c.restarts)
			}
		}
	}
	want := "start_network start_storage running restarting restarted restarting restarted stopping stop_storage stop_network failed"
	if got := strings.Join(path, " "); got != want {
		t.Errorf("hooks (running after a restart left out):\n\t%s\nwant\n\t%s", got, want)
	}
	if st.LastExit == nil || st.LastExit.Reason != "crash" || st.LastExit.Code != 3 {
		t.Errorf("last exit %+v, want a crash with status 3", st.LastExit)
	}
	if !strings.Contains(strings.ToLower(st.Reason), "restart") {
		t.Errorf("failure reason %q does not say the restart budget is spent", st.Reason)
	}
	// The status says what happened to the restart that found the budget
	// spent, rather than "3 of 2".
	if out, _, _ := e.ctl("status", vm); !regexp.MustCompile(`restarts:\s+2 of 2; restart 3 was refused`).MatchString(out) {
		t.Errorf("status of a VM whose third restart was refused:\n%s", out)
	}

	if err := os.Remove(crash); err != nil {
		t.Fatal(err)
	}
	d.do(vm, api.ActionFailReset)
	st = d.waitState(vm, api.StateStopped)
	if st.Restarts != 0 {
		t.Errorf("restarts after failreset: %d, want 0", st.Restarts)
	}
	d.do(vm, api.ActionStart)
	st = d.waitState(vm, api.StateRunning)
	if st.Restarts != 0 || !alive(st.PID) {
		t.Errorf("after failreset and start: %+v", st)
	}
	e.waitHooks(vm, append(states(calls), "stopped", "start_network", "start_storage", "running")...)
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
}

// A guest reboot relaunches the hypervisor through restarting and
// restarted without running the network and storage hooks again.
func TestGuestReboot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	marker := filepath.Join(e.work, "rebooted")
	script := fmt.Sprintf("if [ ! -e %s ]; then : > %s; exit 100; fi; exec /bin/sleep 1000", marker, marker)
	vm := e.addVM("reboot", execVM([]string{"/bin/sh", "-c", script}, "reboot_exit_codes = [ 100 ];"))
	d := e.start()
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateRunning, 2)
	calls := e.waitHooks(vm, "start_network", "start_storage", "running", "restarting", "restarted", "running")
	if got := strings.Join(ev.path(), " "); got != "start_network start_storage running restarting restarted running" {
		t.Errorf("transitions: %s", got)
	}
	st := d.get(vm)
	if st.State != api.StateRunning || !alive(st.PID) {
		t.Fatalf("after the reboot: %+v", st)
	}
	if st.LastExit == nil || st.LastExit.Reason != "reboot" || st.LastExit.Code != 100 {
		t.Errorf("last exit %+v, want reboot with status 100", st.LastExit)
	}
	if st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	if calls[5].pid != strconv.Itoa(st.PID) {
		t.Errorf("second running hook saw pid %s, the VM runs as %d", calls[5].pid, st.PID)
	}
	if !strings.Contains(calls[3].reason, "reboot") {
		t.Errorf("restarting hook reason %q does not say reboot", calls[3].reason)
	}
	d.do(vm, api.ActionStop)
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
}
