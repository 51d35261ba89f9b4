package bhyve

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
)

// binDir holds the stand-in built as "bhyve" and "bhyvectl".
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bhyve-standin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bhyve")
	cmd := osexec.Command("go", "build", "-o", bin, "./testdata/standin")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the bhyve stand-in:", err)
		return 1
	}
	if err := os.Link(bin, filepath.Join(dir, "bhyvectl")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

var vmCount atomic.Int64

// uniqueName gives each VM its own name, so bhyvectl.log lines can be told
// apart.
func uniqueName() string { return fmt.Sprintf("vm%d", vmCount.Add(1)) }

func standinOptions() *Options {
	return &Options{
		Binary:             filepath.Join(binDir, "bhyve"),
		Bhyvectl:           filepath.Join(binDir, "bhyvectl"),
		GenerateACPITables: Bool(true),
		VMExitOnHalt:       Bool(true),
	}
}

// specWith returns a spec whose user config file holds extra lines.
func specWith(t *testing.T, lines string) hypervisor.Spec {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "bhyve.conf")
	if err := os.WriteFile(cfg, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	return hypervisor.Spec{Name: uniqueName(), MemoryMB: 512, CPUs: 2, ConfigFile: cfg, Options: standinOptions()}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		NewDriver: func() hypervisor.Driver { return New() },
		Spec: func(t *testing.T, kind drivertest.Kind) hypervisor.Spec {
			if kind == drivertest.Stubborn {
				return specWith(t, "standin.mode=stubborn\n")
			}
			return specWith(t, "# graceful\n")
		},
		OutputMarker:   " running\n",
		ShutdownMarker: "powering off\n",
	})
}

const guard = 60 * time.Second

func start(t *testing.T, spec hypervisor.Spec) (hypervisor.Instance, *drivertest.Output) {
	t.Helper()
	if spec.RunDir == "" {
		spec.RunDir = filepath.Join(t.TempDir(), "run")
	}
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

// bhyvectlCalls returns the logged bhyvectl invocations for a VM.
func bhyvectlCalls(name string) []string {
	b, _ := os.ReadFile(filepath.Join(binDir, "bhyvectl.log"))
	var calls []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, " --vm="+name) {
			calls = append(calls, l)
		}
	}
	return calls
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		code   int
		reason hypervisor.ExitReason
		detail string
	}{
		{0, hypervisor.ExitReboot, "bhyve exit 0: reboot"},
		{1, hypervisor.ExitPoweroff, "bhyve exit 1: powered off"},
		{2, hypervisor.ExitPoweroff, "bhyve exit 2: halted"},
		{3, hypervisor.ExitCrash, "bhyve exit 3: triple fault"},
		{4, hypervisor.ExitCrash, "bhyve exit 4: error"},
		{5, hypervisor.ExitCrash, "bhyve exit 5: unexpected status"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			spec := specWith(t, fmt.Sprintf("standin.exit=%d\n", tt.code))
			inst, _ := start(t, spec)
			e := waitExit(t, inst)
			if e.Reason != tt.reason || e.Code != tt.code || e.Detail != tt.detail {
				t.Errorf("exit = %+v, want %s %q", e, tt.reason, tt.detail)
			}
			// Destroyed before Done was closed.
			if calls := bhyvectlCalls(spec.Name); len(calls) != 1 || calls[0] != "--destroy --vm="+spec.Name {
				t.Errorf("bhyvectl calls %q, want one --destroy", calls)
			}
		})
	}
}

// A bhyve re-adopted by a fresh driver (as after a daemon restart) whose
// guest powers off or reboots on its own: the exit status, learnt through
// the proc connector since the process is not the recovering instance's
// child, says which. Without root it is unknown and taken for a crash.
func TestRecoveredExitStatus(t *testing.T) {
	tests := []struct {
		code   int
		reason hypervisor.ExitReason
	}{
		{1, hypervisor.ExitPoweroff},
		{0, hypervisor.ExitReboot},
		{3, hypervisor.ExitCrash},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "exit")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			spec := specWith(t, "standin.exitfifo="+fifo+"\n")
			first, out := start(t, spec)
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			if err := out.WaitFor(ctx, "running\n"); err != nil {
				t.Fatal(err)
			}
			spec.RunDir = first.Handle().RunDir
			spec.Output = &drivertest.Output{}
			rec, err := New().Recover(ctx, spec, first.Handle())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rec.Kill(); <-rec.Done() })
			if err := os.WriteFile(fifo, []byte(fmt.Sprintln(tt.code)), 0o600); err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, rec)
			if os.Geteuid() != 0 {
				if !e.StatusUnknown || e.Reason != hypervisor.ExitCrash {
					t.Errorf("exit = %+v, want an unknown status taken for a crash", e)
				}
				return
			}
			if e.Reason != tt.reason || e.Code != tt.code || e.StatusUnknown {
				t.Errorf("exit = %+v, want %s with code %d", e, tt.reason, tt.code)
			}
		})
	}
}

// What bhyvectl prints reaches the VM's output, naming the call.
func TestBhyvectlOutputReachesTheLog(t *testing.T) {
	spec := specWith(t, "standin.exit=1\n")
	inst, out := start(t, spec)
	waitExit(t, inst)
	want := "bhyvectl --destroy --vm=" + spec.Name + ": standin bhyvectl done\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
}

func TestGeneratedConfig(t *testing.T) {
	spec := specWith(t, "# mine\npci.0.0.0.device=hostbridge\nmemory.size=8G\ncpus=16\nlpc.com1.path=stdio\n")
	spec.Sockets, spec.Cores, spec.Threads = 1, 2, 1
	spec.BootROM = "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd"
	inst, out := start(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, " running\n"); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := "config pci.0.0.0.device=hostbridge\nconfig lpc.com1.path=stdio\n" +
		"config acpi_tables=true\nconfig x86.vmexit_on_hlt=true\nconfig memory.size=512M\nconfig cpus=2\n" +
		"config sockets=1\nconfig cores=2\nconfig threads=1\nconfig lpc.bootrom=/usr/local/share/uefi-firmware/BHYVE_UEFI.fd\n" +
		"vm " + spec.Name + " running\n"
	if got != want {
		t.Errorf("bhyve saw\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(spec.ConfigFile + ".generated"); err != nil {
		t.Errorf("no generated file next to the user's: %v", err)
	}
	if err := inst.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitPoweroff {
		t.Errorf("exit = %+v", e)
	}
}

func TestNoConfigFile(t *testing.T) {
	o := standinOptions()
	o.GenerateACPITables, o.VMExitOnHalt = Bool(false), Bool(false)
	spec := hypervisor.Spec{Name: uniqueName(), MemoryMB: 256, RunDir: filepath.Join(t.TempDir(), "run"), Options: o}
	inst, out := start(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, " running\n"); err != nil {
		t.Fatal(err)
	}
	want := "config acpi_tables=false\nconfig x86.vmexit_on_hlt=false\nconfig memory.size=256M\nvm " + spec.Name + " running\n"
	if got := out.String(); got != want {
		t.Errorf("bhyve saw\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(spec.RunDir, "bhyve.conf.generated")); err != nil {
		t.Error(err)
	}
	inst.Kill()
	waitExit(t, inst)
}

func TestKillDestroys(t *testing.T) {
	spec := specWith(t, "standin.mode=stubborn\n")
	inst, _ := start(t, spec)
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitKilled || e.Signal != "SIGKILL" {
		t.Errorf("exit = %+v", e)
	}
	// Once on force, once after the exit.
	if calls := bhyvectlCalls(spec.Name); len(calls) != 2 {
		t.Errorf("bhyvectl calls %q, want two --destroy", calls)
	}
}

func TestResetNMI(t *testing.T) {
	spec := specWith(t, "")
	inst, _ := start(t, spec)
	ctx := context.Background()
	if err := inst.(hypervisor.Resetter).Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.(hypervisor.NMIer).NMI(ctx); err != nil {
		t.Fatal(err)
	}
	calls := bhyvectlCalls(spec.Name)
	want := []string{"--force-reset --vm=" + spec.Name, "--inject-nmi --vm=" + spec.Name}
	if strings.Join(calls, "|") != strings.Join(want, "|") {
		t.Errorf("bhyvectl calls %q, want %q", calls, want)
	}
	inst.Kill()
	waitExit(t, inst)
	if err := inst.(hypervisor.Resetter).Reset(ctx); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("Reset after exit: %v", err)
	}
}

func TestBadSpec(t *testing.T) {
	tests := []struct {
		name string
		spec hypervisor.Spec
		want string
	}{
		{"bad name", hypervisor.Spec{Name: "../x", Options: standinOptions()}, "VM name"},
		{"empty name", hypervisor.Spec{Options: standinOptions()}, "VM name"},
		{"wrong options", hypervisor.Spec{Name: "a", Options: "x"}, "want *bhyve.Options"},
		{"missing config file", hypervisor.Spec{Name: "a", ConfigFile: "/nonexistent/bhyve.conf", Options: standinOptions()}, "read the VM's bhyve config file"},
		{"missing binary", hypervisor.Spec{Name: "a", Options: &Options{Binary: "/nonexistent/bhyve"}}, "set the bhyve binary path"},
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
	t.Run("binary a user can change", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: the trust rule applies to a root daemon")
		}
		user := filepath.Join(t.TempDir(), "user")
		if err := os.Mkdir(user, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(user, "bhyve")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(user, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		o := standinOptions()
		o.Binary = bin
		_, err := New().Start(context.Background(), hypervisor.Spec{Name: "a", RunDir: t.TempDir(), Options: o})
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "program refused") || !strings.Contains(err.Error(), user) {
			t.Errorf("err = %v, want the binary refused under the trust rule", err)
		}
	})
	t.Run("malformed user config", func(t *testing.T) {
		spec := specWith(t, "cpus=1\nnot a setting\n")
		spec.RunDir = t.TempDir()
		_, err := New().Start(context.Background(), spec)
		if !errors.Is(err, hypervisor.ErrConfigSyntax) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("err = %v, want a syntax error on line 2", err)
		}
	})
}

func TestDefaultOptions(t *testing.T) {
	o, err := options(hypervisor.Spec{})
	if err != nil || o.Binary != DefaultBinary || o.Bhyvectl != DefaultBhyvectl ||
		o.GenerateACPITables == nil || !*o.GenerateACPITables || o.VMExitOnHalt == nil || !*o.VMExitOnHalt {
		t.Errorf("nil Options gave %+v, %v", o, err)
	}
	o, _ = options(hypervisor.Spec{Options: &Options{}})
	if o.Binary != DefaultBinary || o.Bhyvectl != DefaultBhyvectl || o.GenerateACPITables != nil || o.VMExitOnHalt != nil {
		t.Errorf("empty Options gave %+v", o)
	}
	// Unset switches are not generated, so the user's file keeps its own.
	for _, set := range Settings(hypervisor.Spec{}, Options{}) {
		if set.Key == "acpi_tables" || set.Key == "x86.vmexit_on_hlt" {
			t.Errorf("unset switch generated: %+v", set)
		}
	}
}
