package exec

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
	"github.com/vmstated/vmstated/hypervisor/internal/vmproc"
	"github.com/vmstated/vmstated/hypervisor/process"
)

const marker = "vm is up"

// Shell scripts standing in for VMs. The marker is printed after the trap
// is set, so Shutdown is only sent once the script reacts to it; waiting
// on a background sleep lets the trap run at once.
const (
	gracefulScript = `trap 'echo powering off; exit 0' TERM; echo "` + marker + `"; while :; do sleep 1 & wait $!; done`
	stubbornScript = `trap '' TERM; echo "` + marker + `"; while :; do sleep 1 & wait $!; done`
)

func shSpec(script string, o Options) hypervisor.Spec {
	o.Command = []string{"/bin/sh", "-c", script}
	return hypervisor.Spec{Name: "t", Options: &o}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		NewDriver: func() hypervisor.Driver { return New() },
		Spec: func(t *testing.T, kind drivertest.Kind) hypervisor.Spec {
			if kind == drivertest.Graceful {
				return shSpec(gracefulScript, Options{})
			}
			return shSpec(stubbornScript, Options{})
		},
		OutputMarker:   marker,
		ShutdownMarker: "powering off\n",
	})
}

const guard = 60 * time.Second

func run(t *testing.T, spec hypervisor.Spec) (hypervisor.Instance, *drivertest.Output) {
	t.Helper()
	spec.RunDir = filepath.Join(t.TempDir(), "run")
	out := &drivertest.Output{}
	spec.Output = out
	inst, err := New().Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Kill(); <-inst.Done() })
	return inst, out
}

func waitExit(t *testing.T, inst hypervisor.Instance) hypervisor.Exit {
	t.Helper()
	select {
	case <-inst.Done():
	case <-time.After(guard):
		t.Fatal("no exit")
	}
	e, _ := inst.Exit()
	return e
}

func TestExitMapping(t *testing.T) {
	o := Options{RebootExitCodes: []int{100}, PoweroffExitCodes: []int{0, 7}}
	tests := []struct {
		name   string
		script string
		opts   Options
		want   hypervisor.ExitReason
		code   int
		signal string
	}{
		{"exit 0 poweroff", "exit 0", o, hypervisor.ExitPoweroff, 0, ""},
		{"exit 7 poweroff", "exit 7", o, hypervisor.ExitPoweroff, 7, ""},
		{"exit 100 reboot", "exit 100", o, hypervisor.ExitReboot, 100, ""},
		{"exit 3 crash", "exit 3", o, hypervisor.ExitCrash, 3, ""},
		{"default poweroff code", "exit 0", Options{}, hypervisor.ExitPoweroff, 0, ""},
		{"exit 1 crash by default", "exit 1", Options{}, hypervisor.ExitCrash, 1, ""},
		{"segv crash", "kill -SEGV $$", o, hypervisor.ExitCrash, -1, "SIGSEGV"},
		{"abort crash", "kill -ABRT $$", o, hypervisor.ExitCrash, -1, "SIGABRT"},
		{"term from someone else", "kill -TERM $$", o, hypervisor.ExitKilled, -1, "SIGTERM"},
		{"kill from someone else", "kill -KILL $$", o, hypervisor.ExitKilled, -1, "SIGKILL"},
		{"hup from someone else", "kill -HUP $$", o, hypervisor.ExitKilled, -1, "SIGHUP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst, _ := run(t, shSpec(tt.script, tt.opts))
			e := waitExit(t, inst)
			if e.Reason != tt.want || e.Code != tt.code || e.Signal != tt.signal {
				t.Errorf("exit = %+v, want %s code %d signal %q", e, tt.want, tt.code, tt.signal)
			}
		})
	}
}

func TestStopSignal(t *testing.T) {
	// Without a trap the shell dies of SIGINT: after Shutdown that is a
	// successful graceful stop.
	inst, out := run(t, shSpec(`echo "`+marker+`"; while :; do sleep 1 & wait $!; done`, Options{StopSignal: syscall.SIGINT}))
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, marker); err != nil {
		t.Fatal(err)
	}
	if err := inst.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitPoweroff || e.Signal != "SIGINT" {
		t.Errorf("exit = %+v, want poweroff by SIGINT", e)
	}
}

func TestPauseResume(t *testing.T) {
	dir := t.TempDir()
	tick := filepath.Join(dir, "tick")
	// The script counts into a file; while paused the count must not move.
	inst, out := run(t, shSpec(`trap 'exit 0' TERM; echo "`+marker+`"; i=0; while :; do i=$((i+1)); echo $i > `+tick+`; sleep 0.05 & wait $!; done`, Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, marker); err != nil {
		t.Fatal(err)
	}
	p, ok := inst.(hypervisor.Pauser)
	if !ok {
		t.Fatal("exec instance is not a Pauser")
	}
	if err := p.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until the kernel reports the process stopped.
	pid := inst.Handle().PID
	for !stopped(t, pid) {
		select {
		case <-ctx.Done():
			t.Fatal("the process never showed as stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
	before, _ := os.ReadFile(tick)
	time.Sleep(300 * time.Millisecond)
	after, _ := os.ReadFile(tick)
	if string(before) != string(after) {
		t.Errorf("count moved while paused: %q -> %q", before, after)
	}
	if err := p.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		now, _ := os.ReadFile(tick)
		if string(now) != string(after) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("count did not move after Resume")
		case <-time.After(20 * time.Millisecond):
		}
	}
	inst.Kill()
	waitExit(t, inst)
	if err := p.Pause(ctx); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("Pause after exit: %v, want ErrExited", err)
	}
}

// stopped reports whether pid is in state T (stopped).
func stopped(t *testing.T, pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skip("no /proc: cannot observe a stopped process")
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'T'
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		spec hypervisor.Spec
		want string
	}{
		{"no options", hypervisor.Spec{}, "no command"},
		{"empty command", hypervisor.Spec{Options: &Options{}}, "no command"},
		{"wrong type", hypervisor.Spec{Options: 3}, "want *exec.Options"},
		{"code both ways", hypervisor.Spec{Options: &Options{Command: []string{"/bin/true"}, RebootExitCodes: []int{0}}}, "both as poweroff and as reboot"},
		{"missing program", hypervisor.Spec{Options: &Options{Command: []string{"/nonexistent/vmm"}}}, "nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.RunDir = t.TempDir()
			_, err := New().Start(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := New().Recover(context.Background(), hypervisor.Spec{}, hypervisor.Handle{Driver: "qemu", PID: 1}); err == nil {
		t.Error("Recover of another driver's handle: no error")
	}
}

func TestClassifyUnobserved(t *testing.T) {
	o, _ := options(hypervisor.Spec{Options: &Options{Command: []string{"x"}}})
	unknown := process.Status{Code: -1}
	tests := []struct {
		req  vmproc.Requests
		want hypervisor.ExitReason
	}{
		{vmproc.Requests{}, hypervisor.ExitCrash},
		{vmproc.Requests{Shutdown: true}, hypervisor.ExitPoweroff},
		{vmproc.Requests{Kill: true}, hypervisor.ExitKilled},
		{vmproc.Requests{Shutdown: true, Kill: true}, hypervisor.ExitKilled},
	}
	for _, tt := range tests {
		e := classify(unknown, tt.req, o)
		if e.Reason != tt.want || e.Code != -1 || !e.StatusUnknown || !strings.Contains(e.Detail, "exit status unknown") {
			t.Errorf("classify(unknown, %+v) = %+v, want %s", tt.req, e, tt.want)
		}
	}
}

// BenchmarkExecStart measures Start until the instance runs (the process
// has been started and its start time read, the output follower set up).
func BenchmarkExecStart(b *testing.B) {
	dir := b.TempDir()
	spec := hypervisor.Spec{Name: "b", RunDir: dir, Options: &Options{Command: []string{"/bin/sleep", "100"}}}
	d := New()
	ctx := context.Background()
	for b.Loop() {
		inst, err := d.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		inst.Kill()
		<-inst.Done()
		b.StartTimer()
	}
}

// BenchmarkOSExecStart is the baseline: a plain os/exec start of the same
// program.
func BenchmarkOSExecStart(b *testing.B) {
	for b.Loop() {
		cmd := osexec.Command("/bin/sleep", "100")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		b.StartTimer()
	}
}

// TestConformanceParallel runs the suite's cases side by side, as slow
// drivers may, which also shows that instances do not share state.
func TestConformanceParallel(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		NewDriver: func() hypervisor.Driver { return New() },
		Spec: func(t *testing.T, kind drivertest.Kind) hypervisor.Spec {
			if kind == drivertest.Graceful {
				return shSpec(gracefulScript, Options{})
			}
			return shSpec(stubbornScript, Options{})
		},
		OutputMarker: marker,
		Parallel:     true,
		Skip:         map[string]string{"StartCancelledContext": "covered by TestConformance"},
	})
}

// TestKillEndsLauncherAndVMM: a launcher script's child (the real VMM)
// dies with it on Kill.
func TestKillEndsLauncherAndVMM(t *testing.T) {
	dir := t.TempDir()
	childPid := filepath.Join(dir, "vmm.pid")
	inst, out := run(t, shSpec(`trap '' TERM; sleep 300 & echo $! > `+childPid+`; echo "`+marker+`"; wait`, Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, marker); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(childPid)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := process.StartTimeOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	vmm, err := process.Attach(pid, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vmm.Signal(syscall.SIGKILL) })
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitKilled {
		t.Errorf("exit = %+v", e)
	}
	select {
	case <-vmm.Done():
	case <-ctx.Done():
		t.Fatal("the launcher's child survived Kill")
	}
}
