package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu/qmp"
)

// guard bounds waits that should end quickly; it catches deadlocks and is
// not a speed assertion.
const guard = 60 * time.Second

func needQEMU(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		tb.Skip("qemu-system-x86_64 is not installed; install qemu-system-x86 to run the QEMU tests")
	}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	tb.Cleanup(cancel)
	return ctx
}

// runDir returns a short run directory (unix socket paths are limited).
func runDir(tb testing.TB) string {
	d, err := os.MkdirTemp("", "vmq")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// lockedBuffer collects output written from another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func diskless(tb testing.TB, o *Options) hypervisor.Spec {
	if o == nil {
		o = &Options{}
	}
	o.Accel = "tcg"
	return hypervisor.Spec{Name: "t", RunDir: runDir(tb), MemoryMB: 64, CPUs: 1, Options: o}
}

func start(tb testing.TB, d *Driver, spec hypervisor.Spec) hypervisor.Instance {
	tb.Helper()
	inst, err := d.Start(testCtx(tb), spec)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() { inst.Kill() })
	return inst
}

func waitExit(t *testing.T, inst hypervisor.Instance) hypervisor.Exit {
	t.Helper()
	select {
	case <-inst.Done():
	case <-time.After(guard):
		t.Fatal("instance did not exit")
	}
	e, ok := inst.Exit()
	if !ok {
		t.Fatal("Exit not final after Done")
	}
	return e
}

func status(t *testing.T, inst hypervisor.Instance) string {
	t.Helper()
	info, err := inst.(hypervisor.Inspector).Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(info["status"])
	var st struct{ Status string }
	json.Unmarshal(b, &st)
	return st.Status
}

func TestQEMUControls(t *testing.T) {
	needQEMU(t)
	d := &Driver{}
	out := &lockedBuffer{}
	spec := diskless(t, &Options{VGA: "std", Serial: true, VNC: "unix"})
	spec.Output = out
	inst := start(t, d, spec)
	ctx := testCtx(t)

	h := inst.Handle()
	if h.Driver != "qemu" || h.PID <= 0 || h.StartTime == 0 || h.Sockets["qmp"] == "" || h.Sockets["serial"] == "" || h.Sockets["vnc"] == "" {
		t.Errorf("handle %+v", h)
	}
	pid, err := os.ReadFile(filepath.Join(spec.RunDir, "qemu.pid"))
	if err != nil || strings.TrimSpace(string(pid)) != fmt.Sprint(h.PID) {
		t.Errorf("pidfile %q (%v), pid %d", pid, err, h.PID)
	}
	if s := status(t, inst); s != "running" {
		t.Fatalf("status %q", s)
	}

	p := inst.(hypervisor.Pauser)
	if err := p.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if s := status(t, inst); s != "paused" {
		t.Errorf("after Pause: %q", s)
	}
	if err := p.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if s := status(t, inst); s != "running" {
		t.Errorf("after Resume: %q", s)
	}

	var img bytes.Buffer
	format, err := inst.(hypervisor.Screenshotter).Screenshot(ctx, &img)
	if err != nil {
		t.Fatalf("Screenshot: %v", err)
	}
	if format != "png" && format != "ppm" || img.Len() < 8 {
		t.Errorf("screenshot %s, %d bytes", format, img.Len())
	}
	if format == "png" && !bytes.HasPrefix(img.Bytes(), []byte("\x89PNG")) {
		t.Error("png screenshot without PNG magic")
	}

	info, err := inst.(hypervisor.Inspector).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"status", "version", "kvm", "cpus", "block", "blockstats", "chardev", "pci", "vnc"} {
		if _, ok := info[k]; !ok {
			t.Errorf("Info has no %q (errors: %v)", k, info["errors"])
		}
	}
	if info["accel"] != "tcg" {
		t.Errorf("Info accel %v", info["accel"])
	}
	if _, err := json.Marshal(info); err != nil {
		t.Errorf("Info is not JSON-ready: %v", err)
	}

	// No OS answers the power button: the graceful stop is delivered but
	// nothing happens, so the caller falls through to Kill.
	if err := inst.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, done := inst.Exit(); done {
		t.Fatal("a diskless machine exited on the power button")
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, inst)
	if e.Reason != hypervisor.ExitKilled || e.Detail != "host-qmp-quit" || e.Code != 0 {
		t.Errorf("exit %+v, want killed by host-qmp-quit with status 0", e)
	}
	if err := inst.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if err := inst.Shutdown(ctx); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("Shutdown after exit: %v", err)
	}
	if _, err := inst.(hypervisor.Screenshotter).Screenshot(ctx, &img); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("Screenshot after exit: %v", err)
	}
}

func TestQEMUReset(t *testing.T) {
	needQEMU(t)
	inst := start(t, &Driver{}, diskless(t, nil))
	if err := inst.(hypervisor.Resetter).Reset(testCtx(t)); err != nil && !errors.Is(err, hypervisor.ErrExited) {
		t.Fatalf("Reset: %v", err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitReboot || e.Detail != "host-qmp-system-reset" {
		t.Errorf("exit %+v, want reboot after a reset under -no-reboot", e)
	}
}

// An NMI reaches the firmware, which may not expect one: SeaBIOS at "No
// bootable device" sometimes triple-faults, and under -no-reboot that
// ends QEMU as a guest reset.
func TestQEMUNMI(t *testing.T) {
	needQEMU(t)
	inst := start(t, &Driver{}, diskless(t, nil))
	if err := inst.(hypervisor.NMIer).NMI(testCtx(t)); err != nil {
		t.Fatalf("NMI: %v", err)
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitKilled && e.Detail != "guest-reset" {
		t.Errorf("exit %+v, want killed, or a guest reset caused by the NMI", e)
	}
}

// The QMP connection breaking while QEMU lives is not an exit: the
// instance reconnects (to either socket) and carries on.
func TestQEMUReconnectsQMP(t *testing.T) {
	needQEMU(t)
	inst := start(t, &Driver{}, diskless(t, nil))
	i := inst.(*instance)
	i.mu.Lock()
	old := i.qmp
	i.mu.Unlock()
	old.Close()
	ctx := testCtx(t)
	for {
		i.mu.Lock()
		c := i.qmp
		i.mu.Unlock()
		if c != nil && c != old {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no new QMP connection")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, ok := inst.Exit(); ok {
		t.Fatal("a broken QMP connection was taken for an exit")
	}
	if s := status(t, inst); s != "running" {
		t.Errorf("status after reconnecting: %q", s)
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitKilled {
		t.Errorf("exit %+v", e)
	}
}

func TestVersion(t *testing.T) {
	needQEMU(t)
	v, err := Version(testCtx(t), "")
	if err != nil || !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`).MatchString(v) {
		t.Errorf("Version = %q, %v", v, err)
	}
	if _, err := Version(testCtx(t), "/bin/true"); err == nil {
		t.Error("Version of a program that prints nothing succeeded")
	}
}

func TestQEMUScreenshotWithoutDisplay(t *testing.T) {
	needQEMU(t)
	inst := start(t, &Driver{}, diskless(t, nil))
	_, err := inst.(hypervisor.Screenshotter).Screenshot(testCtx(t), &bytes.Buffer{})
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "set vga = std") {
		t.Errorf("screenshot without a display: %v, want not supported, saying what to set", err)
	}
}

func TestQEMUKillFallsBackToSIGKILL(t *testing.T) {
	needQEMU(t)
	d := &Driver{KillGrace: 200 * time.Millisecond}
	inst := start(t, d, diskless(t, nil))
	// A frozen QEMU cannot answer quit: Kill must go on to SIGKILL.
	if err := syscall.Kill(inst.Handle().PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, inst)
	if e.Reason != hypervisor.ExitKilled || e.Signal != "SIGKILL" || e.Code != -1 {
		t.Errorf("exit %+v, want killed by SIGKILL", e)
	}
}

func TestQEMUExternalSignals(t *testing.T) {
	needQEMU(t)
	tests := []struct {
		sig  syscall.Signal
		want hypervisor.ExitReason
	}{
		{syscall.SIGTERM, hypervisor.ExitKilled}, // SHUTDOWN host-signal
		{syscall.SIGKILL, hypervisor.ExitCrash},  // no SHUTDOWN, not ours
	}
	for _, tt := range tests {
		t.Run(tt.sig.String(), func(t *testing.T) {
			inst := start(t, &Driver{}, diskless(t, nil))
			syscall.Kill(inst.Handle().PID, tt.sig)
			if e := waitExit(t, inst); e.Reason != tt.want {
				t.Errorf("exit %+v, want %s", e, tt.want)
			}
		})
	}
}

func TestQEMUStartErrors(t *testing.T) {
	needQEMU(t)
	tests := []struct {
		name string
		o    *Options
		want string
	}{
		{"missing binary", &Options{Binary: "qemu-system-nonexistent"}, "not found"},
		{"rejected option", &Options{ExtraArgs: []string{"-no-such-option"}}, "-no-such-option"},
		{"bad device", &Options{ExtraArgs: []string{"-device", "no-such-device"}}, "no-such-device"},
		{"exits at once", &Options{Disks: []Disk{{Path: "/nonexistent/disk.img", Format: "raw"}}}, "/nonexistent/disk.img"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&Driver{}).Start(testCtx(t), diskless(t, tt.o))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one quoting %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestQEMUStartTwice(t *testing.T) {
	needQEMU(t)
	spec := diskless(t, nil)
	inst := start(t, &Driver{}, spec)
	_, err := (&Driver{}).Start(testCtx(t), spec)
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), fmt.Sprint(inst.Handle().PID)) {
		t.Fatalf("second Start in the same run directory: %v", err)
	}
	if s := status(t, inst); s != "running" {
		t.Errorf("the first VM is %q after the refused start", s)
	}
	inst.Kill()
	waitExit(t, inst)
	// The pidfile left behind is no obstacle.
	again := start(t, &Driver{}, spec)
	again.Kill()
}

func TestQEMUStartCancelled(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Driver{}).Start(ctx, diskless(t, nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want Canceled", err)
	}
}

func TestQEMUConfigFile(t *testing.T) {
	needQEMU(t)
	spec := diskless(t, nil)
	spec.MemoryMB = 96
	spec.ConfigFile = filepath.Join(spec.RunDir, "qemu.cfg")
	user := "[machine]\n  type = \"pc\"\n[memory]\n  size = \"64\"\n[device \"rng0\"]\n  driver = \"virtio-rng-pci\"\n"
	if err := os.WriteFile(spec.ConfigFile, []byte(user), 0o644); err != nil {
		t.Fatal(err)
	}
	inst := start(t, &Driver{}, spec)
	info, err := inst.(hypervisor.Inspector).Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	pci, _ := json.Marshal(info["pci"])
	if !strings.Contains(string(pci), `"qdev_id":"rng0"`) {
		t.Errorf("the user's device is missing: %s", pci)
	}
	gen, err := os.ReadFile(spec.ConfigFile + ".generated")
	if err != nil || !strings.Contains(string(gen), `type = "q35"`) || !strings.Contains(string(gen), `size = "96"`) {
		t.Errorf("generated file (%v):\n%s", err, gen)
	}
}

// TestMain lets the test binary act as a daemon that starts a VM, prints
// its handle and exits, leaving the VM running.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VMSTATED_QEMU_TEST_START"); dir != "" {
		spec := hypervisor.Spec{Name: "orphan", RunDir: dir, MemoryMB: 64, Options: &Options{Accel: "tcg"}}
		inst, err := (&Driver{}).Start(context.Background(), spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(inst.Handle())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestQEMURecoverFromAnotherProcess(t *testing.T) {
	needQEMU(t)
	dir := runDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VMSTATED_QEMU_TEST_START="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting daemon stand-in: %v", err)
	}
	var h hypervisor.Handle
	if err := json.Unmarshal(out, &h); err != nil {
		t.Fatalf("handle %q: %v", out, err)
	}
	t.Cleanup(func() {
		if st, err := process.StartTimeOf(h.PID); err == nil && st == h.StartTime {
			syscall.Kill(h.PID, syscall.SIGKILL)
		}
	})

	d := &Driver{}
	spec := hypervisor.Spec{Name: "orphan", RunDir: dir, Options: &Options{Accel: "tcg"}}
	inst, err := d.Recover(testCtx(t), spec, h)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if s := status(t, inst); s != "running" {
		t.Errorf("status %q", s)
	}
	if !strings.Contains(string(inst.Handle().Extra), `"accel":"tcg"`) {
		t.Errorf("recovered handle extra %s", inst.Handle().Extra)
	}
	if inst.Handle().PID != h.PID || inst.Handle().StartTime != h.StartTime {
		t.Errorf("handle changed: %+v vs %+v", inst.Handle(), h)
	}
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	e := waitExit(t, inst)
	// Not the daemon's child: its status is known where the host tells
	// (the proc connector), and said to be unknown where not.
	if e.Reason != hypervisor.ExitKilled || (!e.StatusUnknown && e.Code != 0 && e.Signal == "") || (e.StatusUnknown && e.Code != -1) {
		t.Errorf("exit %+v, want killed, with its status or said to be unknown", e)
	}

	// The process is gone now: Recover says so.
	_, err = d.Recover(testCtx(t), spec, h)
	if !errors.Is(err, hypervisor.ErrGone) {
		t.Errorf("Recover of an exited VM: %v, want ErrGone", err)
	}
	bad := h
	bad.Driver = "bhyve"
	if _, err := d.Recover(testCtx(t), spec, bad); err == nil {
		t.Error("Recover accepted another driver's handle")
	}
}

// BenchmarkQEMUStart measures Start until running (QMP connected, status
// running) and the Kill that follows, for a diskless TCG machine.
func BenchmarkQEMUStart(b *testing.B) {
	needQEMU(b)
	d := &Driver{}
	dir := runDir(b)
	spec := hypervisor.Spec{Name: "bench", RunDir: dir, MemoryMB: 64, Options: &Options{Accel: "tcg"}}
	var startTotal time.Duration
	for b.Loop() {
		t0 := time.Now()
		inst, err := d.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		startTotal += time.Since(t0)
		if err := inst.Kill(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(startTotal.Microseconds())/float64(b.N)/1000, "ms-to-running")
}

// BenchmarkQEMUProcessOnly is the baseline for BenchmarkQEMUStart: the
// same QEMU started by the process package, timed until its QMP socket
// exists. The difference is the driver's own overhead (QMP handshake,
// query-status).
func BenchmarkQEMUProcessOnly(b *testing.B) {
	needQEMU(b)
	dir := runDir(b)
	spec := hypervisor.Spec{Name: "bench", RunDir: dir, MemoryMB: 64, Options: &Options{Accel: "tcg"}}
	bin, args, err := CommandLine(spec)
	if err != nil {
		b.Fatal(err)
	}
	bin, _ = exec.LookPath(bin)
	sock := filepath.Join(dir, qmpSocket)
	for b.Loop() {
		os.Remove(sock)
		p, err := process.Start(process.Config{Path: bin, Args: args, Dir: dir, OutputPath: filepath.Join(dir, "out")})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		b.StartTimer()
	}
}

// TestQEMURichConfig boots the devices of a rich config (every disk
// interface, a CD, two NICs, a display, VNC and serial) to show QEMU
// accepts the generated command line.
func TestQEMURichConfig(t *testing.T) {
	needQEMU(t)
	img := t.TempDir()
	qcow := filepath.Join(img, "a,b.qcow2") // a comma, which must be escaped
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", qcow, "16M").CombinedOutput(); err != nil {
		t.Skipf("qemu-img create: %v: %s", err, b)
	}
	raw := func(name string) string {
		p := filepath.Join(img, name)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	spec := diskless(t, &Options{
		VGA: "std", VNC: "unix", Serial: true,
		Disks: []Disk{
			{Path: qcow, Format: "qcow2", Cache: "none"},
			{Path: raw("scsi.raw"), Format: "raw", Interface: "scsi", ReadOnly: true},
			{Path: raw("ide.raw"), Format: "raw", Interface: "ide", Cache: "writeback"},
			{Path: raw("none.raw"), Format: "raw", Interface: "none"},
		},
		CDROM: raw("cd.iso"),
		NICs: []NIC{
			{Type: "user"},
			{Type: "user", Model: "e1000", MAC: "52:54:00:12:34:56"},
		},
		ExtraArgs: []string{"-device", "virtio-rng-pci"},
	})
	spec.CPUs, spec.Sockets, spec.Cores, spec.Threads = 2, 1, 2, 1
	inst := start(t, &Driver{}, spec)
	info, err := inst.(hypervisor.Inspector).Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(info)
	for _, want := range []string{`"device":"disk0"`, `"device":"disk1"`, `"device":"disk2"`, `"device":"disk3"`,
		`"device":"cdrom0"`, `"ro":true`, `"label":"serial0"`, `"enabled":true`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("Info lacks %s", want)
		}
	}
	if cpus, _ := info["cpus"].([]any); len(cpus) != 2 {
		t.Errorf("%d CPUs, want 2", len(cpus))
	}
}

// BenchmarkQEMUProcessAndQMP adds to BenchmarkQEMUProcessOnly what QEMU
// itself needs before it answers: the QMP handshake and the first
// query-status. BenchmarkQEMUStart minus this is the driver's own
// overhead.
func BenchmarkQEMUProcessAndQMP(b *testing.B) {
	needQEMU(b)
	dir := runDir(b)
	spec := hypervisor.Spec{Name: "bench", RunDir: dir, MemoryMB: 64, Options: &Options{Accel: "tcg"}}
	bin, args, err := CommandLine(spec)
	if err != nil {
		b.Fatal(err)
	}
	bin, _ = exec.LookPath(bin)
	sock := filepath.Join(dir, qmpSocket)
	for b.Loop() {
		os.Remove(sock)
		p, err := process.Start(process.Config{Path: bin, Args: args, Dir: dir, OutputPath: filepath.Join(dir, "out")})
		if err != nil {
			b.Fatal(err)
		}
		var c *qmp.Client
		for {
			if c, err = qmp.Dial(context.Background(), sock); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := c.Execute(context.Background(), "query-status", nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		b.StartTimer()
	}
}

// A command that meets QMP closing because QEMU is exiting reports the exit
// (ErrExited), not a broken connection, however the two race.
func TestQEMUCommandDuringExitIsErrExited(t *testing.T) {
	needQEMU(t)
	for round := range 3 {
		inst := start(t, &Driver{}, diskless(t, nil)).(*instance)
		if err := inst.command(testCtx(t), "quit", nil, nil); err != nil && !errors.Is(err, hypervisor.ErrExited) {
			t.Fatalf("round %d: quit: %v", round, err)
		}
		if err := inst.Shutdown(testCtx(t)); err != nil && !errors.Is(err, hypervisor.ErrExited) {
			t.Fatalf("round %d: shutdown while QEMU quits: %v, want ErrExited", round, err)
		}
		waitExit(t, inst)
	}
}
