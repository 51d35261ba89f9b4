//go:build linux

package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
	"github.com/vmstated/vmstated/statemachine"
)

// unitCommand returns a unit file's ExecStop= command line, its ${VAR}s
// expanded from the unit's Environment= with override applied on top
// (what a drop-in's Environment= does).
func unitCommand(t *testing.T, path string, override map[string]string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	var stop string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch {
		case !ok:
		case k == "Environment":
			if n, val, ok := strings.Cut(v, "="); ok {
				vars[n] = val
			}
		case k == "ExecStop":
			stop = v
		}
	}
	if stop == "" {
		t.Fatalf("%s has no ExecStop=", path)
	}
	for k, v := range override {
		vars[k] = v
	}
	var out []string
	for _, w := range strings.Fields(stop) {
		out = append(out, regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`).ReplaceAllStringFunc(w, func(m string) string {
			return vars[m[2:len(m)-1]]
		}))
	}
	return out
}

// waitLog waits until a VM's log holds want: what the guest printed on its
// serial console. Booting under TCG on a busy machine takes longer than
// the usual guard.
func (e *env) waitLog(name, want string) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(e.readLog(name), want) {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s never printed %q; its log:\n%s", name, want, e.readLog(name))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Host shutdown, through the command vmstated-guests.service runs: two
// real guests (one depending on the other) power off on the ACPI button,
// the dependant first; two diskless VMs, which ignore it, are forced at
// the deadline; the run ends within the deadline and the time the command
// gives itself after it; the report names each VM's end. Before that, a
// SIGTERM to the daemon (what a restart or upgrade sends) leaves every VM
// running.
func TestHostShutdown(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots two Linux guests; skipped with -short")
	}
	kernel, initrd := testguest.Build(t)
	e := newEnv(t)
	guestVM := func(extra string) string {
		return fmt.Sprintf(`    hypervisor = qemu;
    memory = 128;
%s    qemu { accel = tcg; serial = false; extra_args = [ "-kernel", %q, "-initrd", %q, "-append", "console=ttyS0 quiet", "-serial", "stdio" ]; }
`, extra, kernel, initrd)
	}
	// No OS: the power button does nothing; their stop_timeout (the
	// default, 60 s) is longer than the deadline, so only the deadline
	// ends them.
	blankVM := "    hypervisor = qemu;\n    memory = 64;\n    qemu { accel = tcg; serial = false; }\n"
	db := e.addVM("db", guestVM(""))
	app := e.addVM("app", guestVM(fmt.Sprintf("    depends = %s;\n", db)))
	blank1 := e.addVM("blank1", blankVM)
	blank2 := e.addVM("blank2", blankVM)
	all := []string{db, app, blank1, blank2}

	d := e.start()
	for _, vm := range []string{app, blank1, blank2} {
		d.do(vm, api.ActionStart) // app starts db first
	}
	pids := map[string]int{}
	for _, vm := range all {
		pids[vm] = d.waitUp(vm).PID
	}
	for _, vm := range []string{db, app} {
		e.waitLog(vm, testguest.ReadyLine)
	}

	// A restart or upgrade: SIGTERM ends the daemon only.
	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d on SIGTERM:\n%s", code, d.stderr)
	}
	for _, vm := range all {
		if !alive(pids[vm]) {
			t.Fatalf("%s (pid %d) did not outlive the daemon's SIGTERM", vm, pids[vm])
		}
	}
	d = e.start()
	for _, vm := range all {
		// Right after the restart the status can say running before the
		// VM's process is taken over (pid 0): wait for the take-over.
		st := d.waitStatus(vm, "taken over", func(st api.Status) bool {
			return st.State == statemachine.Running && st.Hook == "" && st.PID != 0
		})
		if st.PID != pids[vm] {
			t.Fatalf("%s runs pid %d after the restart, was %d", vm, st.PID, pids[vm])
		}
	}

	evs := map[string]*eventLog{}
	for _, vm := range all {
		evs[vm] = d.events(vm)
	}
	const deadline = 8 * time.Second
	argv := unitCommand(t, filepath.Join("..", "examples", "systemd", "vmstated-guests.service"),
		map[string]string{"VMSTATED_SHUTDOWN_TIMEOUT": fmt.Sprint(deadline.Seconds())})
	if argv[0] != "/usr/local/bin/vmstatedctl" {
		t.Fatalf("ExecStop runs %s, not vmstatedctl", argv[0])
	}
	cmd := exec.Command(ctlBin, argv[1:]...)
	cmd.Env = append(e.environ, "VMSTATED_SOCKET="+e.socket)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(t0)
	t.Logf("%v took %v:\n%s", argv, took.Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	// The command's own bound: the deadline, then 10 s to force what is
	// left; more would mean a forced stop that was not bounded. Its own
	// clock starts once it runs; the wall clock also counts starting a
	// race-built binary on a busy machine.
	m := regexp.MustCompile(`(?m)^shutdown: 4 VM\(s\) in ([0-9.]+)s `).FindSubmatch(out)
	if m == nil {
		t.Fatal("the report lacks its summary line")
	}
	var secs float64
	fmt.Sscan(string(m[1]), &secs)
	if limit := deadline + 10*time.Second; secs > limit.Seconds() || took > limit+10*time.Second {
		t.Errorf("the shutdown took %.2f s by its own clock, %v in all: over its bound of %v", secs, took, limit)
	}

	want := map[string]string{db: "powered off", app: "powered off", blank1: "forced at the deadline", blank2: "forced at the deadline"}
	wantExit := map[string]string{db: "poweroff", app: "poweroff", blank1: "killed", blank2: "killed"}
	for _, vm := range all {
		line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(vm) + `\s+` + regexp.QuoteMeta(want[vm]) + `\s+[0-9.]+\s+` + wantExit[vm] + `$`)
		if !line.Match(out) {
			t.Errorf("the report has no line saying %s was %s (exit %s)", vm, want[vm], wantExit[vm])
		}
		st := d.get(vm)
		if st.State != statemachine.Stopped || st.LastExit == nil || st.LastExit.Reason != wantExit[vm] {
			t.Errorf("%s after the shutdown: %s, last exit %+v; want stopped after %s", vm, st.State, st.LastExit, wantExit[vm])
		}
		waitGone(t, pids[vm])
	}
	if !strings.Contains(string(out), ": 2 powered off, 2 forced at the deadline\n") {
		t.Errorf("the report's totals are not 2 powered off, 2 forced at the deadline")
	}

	// The dependant had stopped before the VM it depends on was asked.
	seq := func(vm string, to statemachine.State) uint64 {
		got := evs[vm].waitEnter(t, to, 1)
		for _, ev := range got {
			if ev.Kind == api.KindTransition && ev.To == to {
				return ev.Seq
			}
		}
		return 0
	}
	if appDown, dbAsked := seq(app, statemachine.Stopped), seq(db, statemachine.Stopping); dbAsked < appDown {
		t.Errorf("%s began to stop (event %d) before %s, which depends on it, had stopped (event %d)", db, dbAsked, app, appDown)
	}
}
