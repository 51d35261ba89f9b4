package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
)

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "no command"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"stat"}, exitUsage, `did you mean "status"`},
		{[]string{"start"}, exitUsage, "name a VM"},
		{[]string{"start", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{[]string{"-o", "yaml", "status"}, exitUsage, "want table or json"},
		{[]string{"status", "-o", "yaml"}, exitUsage, "want table or json"},
		{[]string{"stop"}, exitUsage, "use -a"},
		{[]string{"stop", "-a", "vm"}, exitUsage, "name none"},
		{[]string{"stop", "-t", "-1", "vm"}, exitUsage, "-t"},
		{[]string{"shutdown", "-t", "0"}, exitUsage, "above 0"},
		{[]string{"shutdown", "vm"}, exitUsage, `unexpected argument "vm"`},
		{[]string{"wait", "vm", "sleeping"}, exitUsage, "unknown state"},
		{[]string{"completion", "fish"}, exitUsage, "bash or zsh"},
		{[]string{"log", "-n", "x", "vm"}, exitUsage, "invalid value"},
		{[]string{"-x"}, exitUsage, "flag provided but not defined"},
		{[]string{"help"}, exitOK, ""},
		{[]string{"-h"}, exitOK, ""},
		{[]string{"start", "-h"}, exitOK, ""},
		{[]string{"help", "stop"}, exitOK, ""},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"-s", "/nonexistent/s.sock"}, tc.args...), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", errb.String(), tc.want)
			}
			if tc.code == exitOK && !strings.Contains(out.String(), "usage: vmstatedctl") {
				t.Fatalf("help printed %q", out.String())
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"status"}, {"start", "vm"}, {"events"}, {"log", "-f", "vm"}, {"reload"}} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"-s", sock}, args...), &out, &errb)
		if code != exitUnreachable {
			t.Fatalf("%v: exit %d, want %d", args, code, exitUnreachable)
		}
		msg := errb.String()
		if !strings.Contains(msg, sock) || !strings.Contains(msg, "start the daemon") || strings.Count(msg, "\n") != 1 {
			t.Fatalf("%v: message %q", args, msg)
		}
	}
	// JSON errors for programs.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-s", sock, "-o", "json", "status"}, &out, &errb); code != exitUnreachable {
		t.Fatalf("exit %d", code)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(errb.Bytes(), &eb); err != nil || eb.Code != "unreachable" {
		t.Fatalf("json error %q: %v", errb.String(), err)
	}
	// VMSTATED_SOCKET is the default.
	t.Setenv("VMSTATED_SOCKET", sock)
	errb.Reset()
	if code := run(context.Background(), []string{"status"}, &out, &errb); code != exitUnreachable || !strings.Contains(errb.String(), sock) {
		t.Fatalf("VMSTATED_SOCKET ignored: %d %q", code, errb.String())
	}
}

func TestDefaultSocket(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		euid int
		goos string
		env  map[string]string
		want string
	}{
		{0, "linux", nil, "/run/vmstated.sock"},
		{0, "freebsd", nil, "/var/run/vmstated.sock"},
		{1000, "linux", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/vmstated/vmstated.sock"},
		{1000, "linux", nil, "/tmp/vmstated-1000/vmstated.sock"},
		{1000, "linux", map[string]string{"VMSTATED_SOCKET": "/x/y.sock"}, "/x/y.sock"},
		{0, "linux", map[string]string{"VMSTATED_SOCKET": "/x/y.sock"}, "/x/y.sock"},
	}
	for _, tc := range cases {
		if got := defaultPaths(tc.euid, tc.goos, env(tc.env)).Socket; got != tc.want {
			t.Errorf("euid %d %s %v: %s, want %s", tc.euid, tc.goos, tc.env, got, tc.want)
		}
	}
}

func TestCommands(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"db":  sleeper("db", `owner = root; description = "the database";`),
		"web": sleeper("web", `depends = [ "db" ];`),
		"bad": sleeper("bad", ""),
	})
	// bad's network hook fails.
	hook := "#!/bin/sh\necho no network for $1 >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(d.root, "bad", "start_network"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}

	// status: a table with every VM.
	code, out, _ := d.ctl(t, "status")
	if code != 0 || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "RESTARTS") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	for _, n := range []string{"bad", "db", "web"} {
		if !strings.Contains(out, "\n"+n+" ") {
			t.Fatalf("status lacks %s:\n%s", n, out)
		}
	}
	// -o json parses into the API's type.
	code, out, _ = d.ctl(t, "-o", "json", "status")
	var list []api.Status
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list) != 3 {
		t.Fatalf("status -o json: %d %v\n%s", code, err, out)
	}

	// start -w shows the states as they pass and ends once running (the
	// VM it depends on first).
	code, out, errs := d.ctl(t, "start", "-w", "web")
	if code != 0 {
		t.Fatalf("start -w web: %d %s", code, errs)
	}
	for _, s := range []string{"web: start_network", "web: running"} {
		if !strings.Contains(out, s) {
			t.Fatalf("start -w output lacks %q:\n%s", s, out)
		}
	}
	code, out, _ = d.ctl(t, "-o", "json", "status", "db")
	var db api.Status
	if err := json.Unmarshal([]byte(out), &db); err != nil || db.State != api.StateRunning || db.Owner != "root" {
		t.Fatalf("status db -o json: %d %v %+v", code, err, db)
	}
	code, out, _ = d.ctl(t, "show", "db")
	if code != 0 || !strings.Contains(out, "description: the database") || !strings.Contains(out, "state:") {
		t.Fatalf("show db: %d\n%s", code, out)
	}

	// status -r: only the running ones.
	code, out, _ = d.ctl(t, "status", "-r")
	if code != 0 || strings.Contains(out, "\nbad ") || !strings.Contains(out, "\nweb ") {
		t.Fatalf("status -r: %d\n%s", code, out)
	}

	// Already running: 409 → exit 1 with the VM and its state.
	code, _, errs = d.ctl(t, "start", "web")
	if code != exitFailed || !strings.Contains(errs, "web") || !strings.Contains(errs, "running") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("start running web: %d %q", code, errs)
	}
	code, _, errs = d.ctl(t, "start", "nope")
	if code != exitFailed || !strings.Contains(errs, `"nope"`) || !strings.Contains(errs, "vmstatedctl status") {
		t.Fatalf("start nope: %d %q", code, errs)
	}

	// pause, unpause, restart -w, wait.
	if code, out, _ = d.ctl(t, "pause", "web"); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %s", code, out)
	}
	if code, _, _ = d.ctl(t, "wait", "web", "paused"); code != 0 {
		t.Fatalf("wait paused: %d", code)
	}
	if code, _, _ = d.ctl(t, "unpause", "web"); code != 0 {
		t.Fatalf("unpause: %d", code)
	}
	if code, out, _ = d.ctl(t, "restart", "-w", "web"); code != 0 || !strings.Contains(out, "web: restarting") {
		t.Fatalf("restart -w: %d\n%s", code, out)
	}
	if code, _, _ = d.ctl(t, "wait", "-t", "60", "web"); code != 0 {
		t.Fatalf("wait (steady): %d", code)
	}

	// What exec cannot do: exit 1, saying so.
	for _, args := range [][]string{{"reset", "web"}, {"nmi", "web"}, {"info", "web"}, {"screenshot", "web", filepath.Join(t.TempDir(), "x.png")}} {
		code, _, errs = d.ctl(t, args...)
		if code != exitFailed || !strings.Contains(errs, "cannot") {
			t.Fatalf("%v: %d %q", args, code, errs)
		}
	}

	// log: the last lines, as JSON too.
	code, out, _ = d.ctl(t, "log", "-n", "3", "web")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("log -n 3: %d\n%s", code, out)
	}
	code, out, _ = d.ctl(t, "-o", "json", "log", "-n", "2", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var entry map[string]string
	if code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &entry) != nil || entry["vm"] != "web" {
		t.Fatalf("log -o json: %d\n%s", code, out)
	}

	// -n 0: none of it (the API's lines=0), where no -n is all of it.
	code, out, _ = d.ctl(t, "log", "-n", "0", "web")
	if code != 0 || out != "" {
		t.Fatalf("log -n 0: %d\n%s", code, out)
	}
	code, out, _ = d.ctl(t, "log", "web")
	if code != 0 || strings.Count(out, "\n") <= 3 {
		t.Fatalf("log: %d\n%s", code, out)
	}

	// A VM that fails: start -w exits 1 with the reason; failreset.
	code, out, errs = d.ctl(t, "start", "-w", "bad")
	if code != exitFailed || !strings.Contains(errs, "bad failed") || !strings.Contains(errs, "failreset bad") {
		t.Fatalf("start -w bad: %d %q\n%s", code, errs, out)
	}
	// The table shows it failed, not on its way anywhere.
	code, out, _ = d.ctl(t, "status")
	if code != 0 || !strings.Contains(out, "\nbad   failed ") || strings.Contains(out, "failed->") {
		t.Fatalf("status after a failed start: %d\n%s", code, out)
	}
	if code, _, errs = d.ctl(t, "failreset", "bad"); code != 0 {
		t.Fatalf("failreset: %d %s", code, errs)
	}

	// events: resume after a sequence number.
	var evOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-s", d.socket, "events", "-after", "1"}, &evOut, &evOut) }()
	waitOutput(t, &evOut, "bad: failed -> stopped (failreset)")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("events: exit %d", code)
	}
	// Event 1 is db's first transition; 2 the end of its start_network
	// hook, which events shows only when it failed; 3 the next
	// transition.
	if first := strings.SplitN(evOut.String(), "\n", 2)[0]; !strings.Contains(first, "#3 db: start_network -> start_storage") {
		t.Fatalf("events -after 1 did not start after #1:\n%s", evOut.String())
	}

	// stop -a: web (which depends on db) goes down before db.
	code, out, errs = d.ctl(t, "stop", "-a")
	if code != 0 {
		t.Fatalf("stop -a: %d %s", code, errs)
	}
	// db's first line is "db: stopping", or only "db: stopped" when it
	// was down before its wait read an event (a quick stop).
	iw, id := strings.Index(out, "web: stopped"), strings.Index(out, "db: ")
	if iw < 0 || id < 0 || iw > id || !strings.Contains(out, "db: stopped") {
		t.Fatalf("stop -a order wrong:\n%s", out)
	}
	code, out, _ = d.ctl(t, "-o", "json", "status")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if st.State != api.StateStopped {
			t.Fatalf("after stop -a %s is %s", st.Name, st.State)
		}
	}
	// Stopping a stopped VM fails, naming it.
	if code, _, errs = d.ctl(t, "stop", "db"); code != exitFailed || !strings.Contains(errs, "db") {
		t.Fatalf("stop stopped db: %d %q", code, errs)
	}
	// start then stop -w -f.
	if code, _, _ = d.ctl(t, "start", "-w", "db"); code != 0 {
		t.Fatal("start -w db")
	}
	if code, out, _ = d.ctl(t, "-o", "json", "stop", "-w", "-f", "db"); code != 0 {
		t.Fatalf("stop -w -f: %d", code)
	}
	if err := json.Unmarshal([]byte(out), &db); err != nil || db.State != api.StateStopped {
		t.Fatalf("stop -w -o json: %q %v", out, err)
	}

	// reload picks up a new VM.
	writeConfig(t, d.root, "new", sleeper("new", ""))
	if code, _, errs = d.ctl(t, "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, errs)
	}
	if code, _, _ = d.ctl(t, "status", "new"); code != 0 {
		t.Fatal("new VM not there after reload")
	}

	// Completion: commands, then VM names from the daemon.
	code, out, _ = d.ctl(t, "completion", "bash")
	if code != 0 || !strings.Contains(out, "complete -o default -F _vmstatedctl vmstatedctl") {
		t.Fatalf("completion bash: %s", out)
	}
	code, out, _ = d.ctl(t, "completion", "zsh")
	if code != 0 || !strings.Contains(out, "#compdef vmstatedctl") {
		t.Fatalf("completion zsh: %s", out)
	}
	var cb bytes.Buffer
	run(context.Background(), []string{"__complete"}, &cb, &cb)
	if !strings.Contains(cb.String(), "start\n") || strings.Contains(cb.String(), "__complete") {
		t.Fatalf("command candidates: %q", cb.String())
	}
	cb.Reset()
	run(context.Background(), []string{"__complete", "-s", d.socket, "stop", "-t", "5", ""}, &cb, &cb)
	if cb.String() != "bad\ndb\nnew\nweb\n" {
		t.Fatalf("VM candidates: %q", cb.String())
	}
	cb.Reset()
	run(context.Background(), []string{"__complete", "-s", d.socket, "wait", "web", ""}, &cb, &cb)
	if !strings.Contains(cb.String(), "running\n") {
		t.Fatalf("state candidates: %q", cb.String())
	}
}

// Completion offers each command's flags, as its flag set has them, and
// knows from the flag set which flags take the next word.
func TestCompleteFlags(t *testing.T) {
	d := startDaemon(t, map[string]string{"db": sleeper("db", ""), "web": sleeper("web", "")})
	complete := func(words ...string) []string {
		var out bytes.Buffer
		run(context.Background(), append([]string{"__complete"}, words...), &out, &out)
		return strings.Fields(out.String())
	}
	cases := []struct {
		words []string
		want  string
	}{
		{[]string{"-"}, "-H -h -o -s"},
		{[]string{"-s", d.socket, "st"}, "start stop status"},
		{[]string{"stop", "-"}, "-H -a -f -o -s -t -w"},
		{[]string{"events", "-af"}, "-after"},
		{[]string{"log", "-"}, "-H -f -n -o -s"},
		{[]string{"check", "-"}, "-H -c -o -s"},
		{[]string{"help", "-"}, ""},
		// A flag's value: -o's values; -t's is not a VM name.
		{[]string{"stop", "-o", ""}, "table json"},
		{[]string{"-o", "j"}, "json"},
		{[]string{"-s", d.socket, "stop", "-t", ""}, ""},
		// -f takes no value: the next word is the VM; -s given after
		// the command is used.
		{[]string{"stop", "-f", "-s", d.socket, ""}, "db web"},
		{[]string{"stop", "-s=" + d.socket, "-t=5", "w"}, "web"},
		{[]string{"-s", d.socket, "log", "-n", "3", "db", ""}, ""},
	}
	for _, tc := range cases {
		got := complete(tc.words...)
		sort.Strings(got)
		want := strings.Fields(tc.want)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("complete %q: %q, want %q", tc.words, got, want)
		}
	}
	// Every command stops at its flags when run with -h, which is how
	// completion learns them: none may act first.
	for _, c := range commands {
		if c.hidden {
			continue
		}
		p := commandFlags(c, filepath.Join(t.TempDir(), "none.sock"))
		if c.name != "help" && p.flags == nil {
			t.Errorf("%s: no flag set seen; it must parse e.newFlags before it acts", c.name)
		}
	}
}

func TestCheck(t *testing.T) {
	root := t.TempDir()
	writeConfig(t, root, "good", sleeper("good", ""))
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-c", root}, &out, &errb); code != 0 || !strings.Contains(out.String(), "1 VM(s), configuration ok") {
		t.Fatalf("check good: %d %s %s", code, out.String(), errb.String())
	}
	writeConfig(t, root, "broken", "broken { hypervisor = exec; cpus = lots; }\n")
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"check", "-c", root}, &out, &errb); code != exitFailed || !strings.Contains(out.String(), "cpus") {
		t.Fatalf("check broken: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	run(context.Background(), []string{"-o", "json", "check", "-c", root}, &out, &errb)
	var res checkResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.OK || len(res.VMs) != 1 || len(res.Invalid) != 1 {
		t.Fatalf("check -o json: %v %+v", err, res)
	}
	if code := run(context.Background(), []string{"check", "-c", filepath.Join(root, "missing")}, &out, &errb); code != exitFailed {
		t.Fatalf("check of a missing dir: %d", code)
	}
}

// TestBinary runs the built command for its exit statuses.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vmstatedctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")})
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"-s", d.socket, "status"}, 0},
		{[]string{"-s", d.socket, "start", "-w", "vm"}, 0},
		{[]string{"-s", d.socket, "start", "vm"}, 1},
		{[]string{"-s", d.socket, "stop", "-w", "vm"}, 0},
		{[]string{"-s", d.socket, "start", "nope"}, 1},
		{[]string{"-s", d.socket, "bogus"}, 2},
		{[]string{"-s", filepath.Join(t.TempDir(), "no.sock"), "status"}, 3},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "VMSTATED_SOCKET=")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.code, out)
		}
	}
}

// start -w returns once the VM is up: running and its running hook
// finished, so a script that goes on after it finds what that hook set up.
func TestStartWaitsForRunningHook(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")})
	marker := filepath.Join(t.TempDir(), "set-up")
	hook := fmt.Sprintf("#!/bin/sh\nsleep 0.3\ntouch %q\n", marker)
	if err := os.WriteFile(filepath.Join(d.root, "vm", "running"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errs := d.ctl(t, "start", "-w", "vm")
	if code != 0 || !strings.Contains(out, "vm: running") {
		t.Fatalf("start -w: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("start -w returned before the running hook finished: %v", err)
	}
	// The event stream has a line for the end of the running hook, and
	// none for the states that have no hook.
	var evOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-s", d.socket, "events", "-after", "0", "vm"}, &evOut, &evOut) }()
	waitOutput(t, &evOut, "vm: hook running finished")
	cancel()
	<-done
	if strings.Contains(evOut.String(), "start_network hook") {
		t.Fatalf("events show a state without a hook:\n%s", evOut.String())
	}
	// A failing running hook makes start -w fail with the reason.
	if code, _, errs = d.ctl(t, "stop", "-w", "vm"); code != 0 {
		t.Fatalf("stop -w: %d %s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(d.root, "vm", "running"), []byte("#!/bin/sh\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errs = d.ctl(t, "start", "-w", "vm")
	if code == 0 || !strings.Contains(errs, "status 7") {
		t.Fatalf("start -w with a failing running hook: %d %q", code, errs)
	}
}

// stop -a also cancels a start that waits for the VMs it depends on, so
// the VM stays stopped instead of failing once those are stopped.
func TestStopAllCancelsWaitingStart(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"db":  sleeper("db", ""),
		"app": sleeper("app", "depends = db;"),
	})
	if err := os.WriteFile(filepath.Join(d.root, "db", "start_network"), []byte("#!/bin/sh\nsleep 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := d.ctl(t, "start", "app"); code != 0 {
		t.Fatalf("start app: %d %s", code, errs)
	}
	if code, _, errs := d.ctl(t, "stop", "-a", "-w"); code != 0 {
		t.Fatalf("stop -a: %d %s", code, errs)
	}
	code, out, _ := d.ctl(t, "-o", "json", "status", "app")
	var app api.Status
	if err := json.Unmarshal([]byte(out), &app); err != nil || code != 0 {
		t.Fatalf("status app: %d %v %s", code, err, out)
	}
	if app.State != api.StateStopped || app.Desired != api.StateStopped {
		t.Fatalf("app after stop -a: %s, desired %s (%s)", app.State, app.Desired, app.Reason)
	}
}

// stop of a VM that others depend on stops those first, dependants of
// dependants before them, says so, and leaves unrelated VMs alone.
func TestStopStopsDependantsFirst(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"db":    sleeper("db", ""),
		"web":   sleeper("web", "depends = db;"),
		"app":   sleeper("app", "depends = web;"),
		"other": sleeper("other", ""),
	})
	for _, vm := range []string{"app", "other"} {
		if code, _, errs := d.ctl(t, "start", "-w", vm); code != 0 {
			t.Fatalf("start -w %s: %d %s", vm, code, errs)
		}
	}
	code, out, errs := d.ctl(t, "stop", "db")
	if code != 0 {
		t.Fatalf("stop db: %d %s\n%s", code, errs, out)
	}
	if !strings.HasPrefix(out, "db: app, web depend on it; stopping them first\n") {
		t.Fatalf("stop db did not say what it stops first:\n%s", out)
	}
	ia, iw, id := strings.Index(out, "app: stopped"), strings.Index(out, "web: stopped"), strings.Index(out, "db: stop requested")
	if ia < 0 || iw < 0 || id < 0 || ia > iw || iw > id {
		t.Fatalf("stop db: want app, then web stopped before db's stop:\n%s", out)
	}
	if code, _, _ := d.ctl(t, "wait", "db", "stopped"); code != 0 {
		t.Fatal("db never stopped")
	}
	want := map[string]api.State{"db": api.StateStopped, "web": api.StateStopped, "app": api.StateStopped, "other": api.StateRunning}
	for vm, state := range want {
		st, err := d.sup.Get(vm)
		if err != nil || api.State(st.State) != state {
			t.Errorf("%s after stop db: %v %v, want %s", vm, st.State, err, state)
		}
	}
	// Nothing depends on other: no word about dependants.
	code, out, _ = d.ctl(t, "stop", "-w", "other")
	if code != 0 || strings.Contains(out, "depend") {
		t.Fatalf("stop other: %d\n%s", code, out)
	}
}

func TestDependants(t *testing.T) {
	list := []api.Status{
		{Name: "db", State: api.StateRunning},
		{Name: "web", State: api.StateRunning, Depends: []string{"db"}},
		{Name: "app", State: api.StateStopped, Desired: api.StateRunning, Depends: []string{"web"}, WaitingFor: []string{"web"}}, // waits to start
		{Name: "idle", State: api.StateStopped, Desired: api.StateStopped, Depends: []string{"db"}},
		{Name: "batch", State: api.StateRunning, Depends: []string{"idle"}}, // idle is down already
		{Name: "other", State: api.StateRunning},
	}
	if got := dependants(list, "db"); strings.Join(got, ",") != "app,web" {
		t.Fatalf("dependants of db: %v", got)
	}
	if got := dependants(list, "other"); len(got) != 0 {
		t.Fatalf("dependants of other: %v", got)
	}
}

// The API's stop stops only the VM it names, as api/README.md says: the
// ordering of dependants is vmstatedctl's, which reads the status first.
func TestAPIStopLeavesDependants(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"db":  sleeper("db", ""),
		"web": sleeper("web", "depends = db;"),
	})
	if code, _, errs := d.ctl(t, "start", "-w", "web"); code != 0 {
		t.Fatalf("start -w web: %d %s", code, errs)
	}
	if _, err := api.NewClient(d.socket).Stop(context.Background(), "db", api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := d.ctl(t, "wait", "db", "stopped"); code != 0 {
		t.Fatal("db never stopped")
	}
	if st, err := d.sup.Get("web"); err != nil || api.State(st.State) != api.StateRunning {
		t.Fatalf("web after the API stopped db: %v %v, want running", st.State, err)
	}
}
