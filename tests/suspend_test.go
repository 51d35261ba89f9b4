//go:build linux

package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
	"github.com/vmstated/vmstated/savefile"
)

// tickingVM is the config body of a QEMU VM booting the ticking test
// guest (a line every second, counting on from boot).
func tickingVM(t *testing.T, memory int, extra string) string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Ticking(t)
	return tickingBody(kernel, initrd, memory, extra)
}

func tickingBody(kernel, initrd string, memory int, extra string) string {
	return fmt.Sprintf(`    hypervisor = qemu;
    memory = %d;
    qemu { accel = tcg; kernel = %q; initrd = %q; append = "console=ttyS0 quiet"; }
%s`, memory, kernel, initrd, extra)
}

// waitTick waits until the guest's console shows a tick past n and
// returns the last one.
func (e *env) waitTick(name string, n int) int {
	e.t.Helper()
	last := 0
	waitUntil(e.t, fmt.Sprintf("a tick past %d on the console of %s", n, name), func() bool {
		last = testguest.LastTick(e.consoleLines(name))
		return last > n
	})
	return last
}

// savePath is where the daemon keeps a suspended VM's guest.
func (e *env) savePath(name string) string { return filepath.Join(e.stateDir, name+".save") }

// A suspended guest carries on where it was when started again: its tick
// count goes on and it does not boot a second time. The suspended state,
// with its saved guest, survives a daemon restart. A restore into a changed
// config fails with QEMU's reason and keeps the file; discard drops it and
// the next start boots afresh. An exec VM cannot be suspended: 501.
func TestSuspendResume(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("susp", body)
	other := e.addVM("suspexec", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	before := e.waitTick(vm, 2)

	out, errOut, code := e.ctl("suspend", vm)
	if code != 0 {
		t.Fatalf("suspend: exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(out, "saving the guest") || !strings.Contains(out, vm+": suspended") {
		t.Errorf("suspend printed:\n%s", out)
	}
	waitGone(t, st.PID)
	sus := d.get(vm)
	if sus.State != api.StateSuspended || sus.PID != 0 || sus.Saved == nil || sus.Saved.Size < 1<<20 || sus.Saved.Time.IsZero() {
		t.Fatalf("after suspend: %+v saved %+v", sus, sus.Saved)
	}
	if fi, err := os.Stat(e.savePath(vm)); err != nil || fi.Size() != sus.Saved.Size {
		t.Errorf("save file: %v, %v; status says %d bytes", fi, err, sus.Saved.Size)
	}
	e.waitHooks(vm, "start_network", "start_storage", "running", "suspending", "stop_storage", "stop_network", "suspended")
	table, _, _ := e.ctl("status")
	if !strings.Contains(table, "suspended") || !strings.Contains(table, "guest saved") {
		t.Errorf("status table:\n%s", table)
	}
	saved := testguest.LastTick(e.consoleLines(vm))

	// The state and its saved guest outlive the daemon.
	d.term()
	d = e.start()
	if again := d.waitState(vm, api.StateSuspended); again.Saved == nil || again.Saved.Size != sus.Saved.Size {
		t.Fatalf("after a daemon restart: %+v", again)
	}

	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	after := e.waitTick(vm, saved)
	lines := e.consoleLines(vm)
	if n := count(lines, testguest.BootLine); n != 1 {
		t.Errorf("the guest booted %d times", n)
	}
	if after <= before {
		t.Errorf("tick %d after the restore, %d before the suspend", after, before)
	}
	if exists(e.savePath(vm)) || d.get(vm).Saved != nil {
		t.Errorf("the used save file is still there")
	}

	// More memory: the saved guest no longer fits.
	if out, errOut, code := e.ctl("suspend", vm); code != 0 {
		t.Fatalf("second suspend: exit %d: %s%s", code, out, errOut)
	}
	e.writeConfig(vm, tickingBody(configValue(t, body, "kernel"), configValue(t, body, "initrd"), 160, ""))
	if _, err := d.c.Reload(ctx(t)); err != nil {
		t.Fatal(err)
	}
	d.do(vm, api.ActionStart)
	failed := d.waitState(vm, api.StateFailed)
	if !strings.Contains(failed.Reason, "load") || failed.Saved == nil || !exists(e.savePath(vm)) {
		t.Errorf("restore into a changed config: %+v, file there: %v", failed, exists(e.savePath(vm)))
	}
	t.Logf("refused: %s", failed.Reason)
	if len(e.vmProcs(vm)) != 0 {
		t.Errorf("a QEMU is left running: %v", e.vmProcs(vm))
	}

	// failreset keeps the saved guest: back to suspended.
	d.do(vm, api.ActionFailReset)
	if st := d.waitState(vm, api.StateSuspended); st.Saved == nil || st.Desired != api.StateSuspended {
		t.Errorf("after failreset: %+v", st)
	}
	if out, errOut, code := e.ctl("discard", vm); code != 0 {
		t.Fatalf("discard: exit %d: %s%s", code, out, errOut)
	}
	if st := d.get(vm); st.State != api.StateStopped || st.Saved != nil || exists(e.savePath(vm)) {
		t.Errorf("after discard: %+v", st)
	}
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	e.waitConsole(vm, testguest.ReadyLine)
	waitUntil(t, "a second boot", func() bool { return count(e.consoleLines(vm), testguest.BootLine) == 2 })
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d.waitState(vm, api.StateStopped)

	d.do(other, api.ActionStart)
	d.waitUp(other)
	_, err := d.c.Suspend(ctx(t), other, api.SuspendOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 501 || ae.Code != api.CodeNotSupported {
		t.Errorf("suspend of an exec VM: %v", err)
	}
	if _, _, code := e.ctl("discard", other); code == 0 {
		t.Errorf("discard of a running VM succeeded")
	}
}

// configValue reads a quoted value from a config body.
func configValue(t *testing.T, body, key string) string {
	t.Helper()
	i := strings.Index(body, key+" = \"")
	if i < 0 {
		t.Fatalf("no %s in %s", key, body)
	}
	rest := body[i+len(key)+4:]
	return rest[:strings.IndexByte(rest, '"')]
}

// A daemon killed (SIGKILL) in the middle of a suspend, while the guest is
// being saved: the next daemon finds the VM either running (the save
// abandoned, the guest going on, one QEMU) or suspended (a whole save
// file, no QEMU), never both or neither.
func TestSuspendDaemonKilled(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("suspkill", body)
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	e.waitTick(vm, 2)

	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := d.c.Events(c, api.EventOptions{VM: vm})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Suspend(ctx(t), vm, api.SuspendOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if ev.Kind == api.KindProgress || ev.To == api.StateStopStorage {
			break
		}
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	s.Close()

	d = e.start()
	end := d.waitStatus(vm, "settled", func(st api.Status) bool {
		return !st.Recovering && st.Hook == "" && (st.State == api.StateRunning || st.State == api.StateSuspended)
	})
	procs := e.vmProcs(vm)
	switch end.State {
	case api.StateRunning:
		if len(procs) != 1 || !alive(end.PID) || exists(e.savePath(vm)) {
			t.Fatalf("running: processes %v, status %+v, save file there: %v", procs, end, exists(e.savePath(vm)))
		}
		ticked := testguest.LastTick(e.consoleLines(vm))
		e.waitTick(vm, ticked)
	case api.StateSuspended:
		waitGone(t, st.PID)
		if len(e.vmProcs(vm)) != 0 || end.Saved == nil || !exists(e.savePath(vm)) {
			t.Fatalf("suspended: processes %v, status %+v", e.vmProcs(vm), end)
		}
	}
	t.Logf("after the kill: %s (%s)", end.State, end.Reason)
	if matches, _ := filepath.Glob(filepath.Join(e.stateDir, ".*.save.tmp")); len(matches) > 0 {
		t.Errorf("temporary save files left: %v", matches)
	}
}

// A host shutdown suspends a VM with on_host_shutdown = suspend, and the
// first daemon start after the reboot (a new boot id) resumes it: its
// uptime goes on, it does not boot again. A VM without it is stopped.
func TestHostShutdownSuspends(t *testing.T) {
	body := tickingVM(t, 128, "    on_host_shutdown = suspend;\n")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("hostsusp", body)
	plain := e.addVM("hoststop", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.do(plain, api.ActionStart)
	d.waitUp(vm)
	d.waitUp(plain)
	if st := d.get(vm); st.OnHostShutdown != "suspend" {
		t.Errorf("on_host_shutdown in the status: %q", st.OnHostShutdown)
	}
	before := e.waitTick(vm, 2)

	out, errOut, code := e.ctl("shutdown", "-t", "120")
	if code != 0 {
		t.Fatalf("shutdown: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, vm+": suspended in") || !strings.Contains(out, plain+": ") {
		t.Errorf("shutdown printed:\n%s", out)
	}
	st := d.get(vm)
	if st.State != api.StateSuspended || st.Desired != api.StateRunning || st.Saved == nil {
		t.Fatalf("after the host shutdown: %+v", st)
	}
	if p := d.get(plain); p.State != api.StateStopped {
		t.Errorf("%s: %s", plain, p.State)
	}
	saved := testguest.LastTick(e.consoleLines(vm))
	d.term()

	// The host comes back: another boot id.
	if err := os.WriteFile(filepath.Join(e.runDir, "boot-id"), []byte("another-boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d = e.start()
	d.waitUp(vm)
	after := e.waitTick(vm, saved)
	if after <= before || count(e.consoleLines(vm), testguest.BootLine) != 1 {
		t.Errorf("after the reboot: tick %d (before %d), boots %d", after, before, count(e.consoleLines(vm), testguest.BootLine))
	}
	if p := d.get(plain); p.State != api.StateStopped {
		t.Errorf("%s without autostart came back %s", plain, p.State)
	}
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d.waitState(vm, api.StateStopped)
}

// ctlCmd is vmstatedctl against the env's daemon, not yet started.
func (e *env) ctlCmd(args ...string) *exec.Cmd {
	return e.command(ctlBin, append([]string{"-s", e.socket}, args...)...)
}

// send | receive between two daemons on this machine (two config roots,
// one kernel and initrd): the guest goes on at the receiver where it was
// at the sender, which is stopped. A send cut short leaves the sender
// suspended, and resumable there; a truncated or damaged stream is
// refused and leaves the receiver stopped.
func TestSendReceive(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e1, e2 := newEnv(t), newEnv(t)
	vm := e1.addVM("xfer", body)
	e2.addVM("xfer", body)
	stranger := e1.addVM("xferother", body)
	d1, d2 := e1.start(), e2.start()
	d1.do(vm, api.ActionStart)
	d1.waitUp(vm)
	e1.waitTick(vm, 2)

	// The reader goes away after a little: the sender stays suspended.
	cut := e1.ctlCmd("send", vm)
	var cutErr lockedBuffer
	cut.Stderr = &cutErr
	r, err := cut.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cut.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := cut.Wait(); err == nil {
		t.Fatal("a send whose reader went away succeeded")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(cutErr.String(), "stays suspended here") {
		t.Errorf("a send whose reader went away: %v: %s", err, cutErr.String())
	}
	if st := d1.waitState(vm, api.StateSuspended); st.Saved == nil {
		t.Fatalf("after the cut send: %+v", st)
	}
	d1.do(vm, api.ActionStart)
	d1.waitUp(vm)
	before := e1.waitTick(vm, testguest.LastTick(e1.consoleLines(vm)))

	// The whole way, through a pipe.
	send, recv := e1.ctlCmd("send", vm), e2.ctlCmd("receive", vm)
	pipe, err := send.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	recv.Stdin = pipe
	var sendErr, recvOut lockedBuffer
	send.Stderr, recv.Stdout, recv.Stderr = &sendErr, &recvOut, &recvOut
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := send.Wait(); err != nil {
		t.Fatalf("send: %v: %s", err, sendErr.String())
	}
	if err := recv.Wait(); err != nil {
		t.Fatalf("receive: %v: %s", err, recvOut.String())
	}
	if st := d1.get(vm); st.State != api.StateStopped || st.Saved != nil || exists(e1.savePath(vm)) {
		t.Errorf("the sender after the send: %+v", st)
	}
	st := d2.waitUp(vm)
	sent := testguest.LastTick(e1.consoleLines(vm))
	after := e2.waitTick(vm, sent)
	if after <= before || count(e2.consoleLines(vm), testguest.BootLine) != 0 {
		t.Errorf("at the receiver: tick %d (sender's last %d), boots %d", after, sent, count(e2.consoleLines(vm), testguest.BootLine))
	}
	t.Logf("send printed %q; receive printed %q", sendErr.String(), recvOut.String())

	// Back to a file, then truncated and damaged copies.
	file := filepath.Join(e2.work, "xfer.stream")
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	back := e2.ctlCmd("send", vm)
	var backErr lockedBuffer
	back.Stdout, back.Stderr = out, &backErr
	if err := back.Run(); err != nil {
		t.Fatalf("send to a file: %v: %s", err, backErr.String())
	}
	out.Close()
	waitGone(t, st.PID)
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte(nil), whole...)
	damaged[len(damaged)/2] ^= 0xff
	for name, data := range map[string][]byte{"truncated": whole[:len(whole)/2], "damaged": damaged} {
		in := e1.ctlCmd("receive", vm)
		in.Stdin = strings.NewReader(string(data))
		b, err := in.CombinedOutput()
		if err == nil || !strings.Contains(string(b), name) {
			t.Errorf("a %s stream: %v: %s", name, err, b)
		}
		if st := d1.get(vm); st.State != api.StateStopped || st.Saved != nil || exists(e1.savePath(vm)) {
			t.Errorf("after a %s stream: %+v", name, st)
		}
	}
	// A stream of another VM, or for other hardware, is refused before
	// anything is restored.
	in := e1.ctlCmd("receive", stranger)
	in.Stdin = strings.NewReader(string(whole))
	if b, err := in.CombinedOutput(); err == nil || !strings.Contains(string(b), "it holds VM") {
		t.Errorf("a stream of %s received into %s: %v: %s", vm, stranger, err, b)
	}
	e1.writeConfig(vm, tickingBody(configValue(t, body, "kernel"), configValue(t, body, "initrd"), 160, ""))
	if _, err := d1.c.Reload(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in = e1.ctlCmd("receive", vm)
	in.Stdin = strings.NewReader(string(whole))
	if b, err := in.CombinedOutput(); err == nil || !strings.Contains(string(b), "virtual hardware differs") {
		t.Errorf("a stream into other hardware: %v: %s", err, b)
	}
	if st := d1.get(vm); st.State != api.StateStopped || exists(e1.savePath(vm)) {
		t.Errorf("after a refused stream: %+v", st)
	}
	e1.writeConfig(vm, body)
	if _, err := d1.c.Reload(ctx(t)); err != nil {
		t.Fatal(err)
	}

	in = e1.ctlCmd("receive", vm)
	in.Stdin = strings.NewReader(string(whole))
	if b, err := in.CombinedOutput(); err != nil {
		t.Fatalf("receive of the whole file: %v: %s", err, b)
	}
	d1.waitUp(vm)
	if _, err := d1.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d1.waitState(vm, api.StateStopped)
}

// slowReceive starts a receive into vm whose stream stalls after the
// magic, and waits until its file is in the state directory; closing the
// writer ends the stream.
func (e *env) slowReceive(d *daemonProc, vm string) (*io.PipeWriter, <-chan error) {
	t := e.t
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	done := make(chan error, 1)
	go func() {
		_, err := d.c.Receive(ctx(t), vm, pr)
		done <- err
	}()
	go pw.Write([]byte("vmstated-save\n"))
	waitUntil(t, "the stream's file in the state directory", func() bool { return exists(e.receivePath(vm)) })
	return pw, done
}

// receivePath is where the daemon writes a stream before it is checked.
func (e *env) receivePath(vm string) string {
	return filepath.Join(e.stateDir, "."+vm+".save.tmp.recv")
}

// Two streams received into one VM at once: the second is refused (409)
// and leaves the first's file alone, which then goes on to be checked on
// its own.
func TestReceiveOneAtATime(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("recvone", body)
	d := e.start()

	pw, first := e.slowReceive(d, vm)
	_, err := d.c.Receive(ctx(t), vm, strings.NewReader("not a saved guest at all"))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "already being received") {
		t.Errorf("a second receive while one runs: %v", err)
	}
	if !exists(e.receivePath(vm)) {
		t.Errorf("the second receive removed the first one's file")
	}
	pw.Close()
	if err := <-first; err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("the first stream, cut after its magic: %v", err)
	}
	if exists(e.receivePath(vm)) {
		t.Errorf("the refused stream's file is left behind")
	}
	if st := d.get(vm); st.State != api.StateStopped || st.Saved != nil {
		t.Errorf("after the refused streams: %+v", st)
	}
}

// A daemon killed (SIGKILL) while it receives a stream leaves a partial
// file as large as what had arrived; the next daemon removes it when it
// starts.
func TestReceiveDaemonKilled(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("recvkill", body)
	d := e.start()
	e.slowReceive(d, vm)
	_ = d.cmd.Process.Kill()
	<-d.done

	d = e.start()
	if st := d.get(vm); st.State != api.StateStopped || st.Saved != nil {
		t.Errorf("after the killed receive: %+v", st)
	}
	if exists(e.receivePath(vm)) {
		t.Errorf("the killed daemon's partial stream is left in the state directory")
	}
}

// A paused VM whose suspend fails (here its suspending hook) stays paused,
// its guest frozen as its user left it, rather than running on.
func TestSuspendFailsPaused(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("susppaused", body)
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	d.do(vm, api.ActionPause)
	d.waitStatus(vm, "paused, its hook done", func(st api.Status) bool { return st.State == api.StatePaused && st.Hook == "" })
	e.control(vm, "suspending", "fail", true)

	out, errOut, code := e.ctl("suspend", vm)
	if code != 1 || !strings.Contains(errOut, "stays paused") {
		t.Errorf("suspend of a paused VM whose hook fails: exit %d: %s%s", code, out, errOut)
	}
	st := d.waitStatus(vm, "paused again, its hook done", func(st api.Status) bool {
		return st.State != api.StateSuspending && st.Hook == ""
	})
	if st.State != api.StatePaused || st.Desired != api.StateRunning || !strings.Contains(st.Reason, "stays paused") {
		t.Errorf("after the failed suspend: %+v", st)
	}
	info, err := d.c.Info(ctx(t), vm)
	if err != nil {
		t.Fatal(err)
	}
	if qs, _ := info["status"].(map[string]any); qs["status"] != "paused" {
		t.Errorf("QEMU's run state after the failed suspend: %v", info["status"])
	}
	if exists(e.savePath(vm)) {
		t.Errorf("a save file is left after the failed suspend")
	}
}

// A receive into a full state directory says that the host ran out of
// room, and where, rather than blaming the stream; nothing is left behind
// and the VM stays stopped.
func TestReceiveStateDirFull(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	stateDirOnTmpfs(t, e)
	vm := e.addVM("recvfull", body)
	d := e.start()
	d.get(vm)
	free := fill(t, e.stateDir)
	defer free()

	var stream bytes.Buffer
	if err := savefile.Write(&stream, savefile.Header{Name: vm, Hypervisor: "qemu", SavedBy: strings.Repeat("qemu ", 40)}); err != nil {
		t.Fatal(err)
	}
	stream.WriteString(strings.Repeat("x", 4096))
	_, err := d.c.Receive(ctx(t), vm, &stream)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status < 500 || !strings.Contains(ae.Message, "no space left") ||
		!strings.Contains(ae.Message, "make room in "+e.stateDir) || strings.Contains(ae.Message, "cannot be restored") {
		t.Errorf("a receive into a full state directory: %v", err)
	}
	if exists(e.receivePath(vm)) {
		t.Errorf("the stream's file is left behind")
	}
	if st := d.get(vm); st.State != api.StateStopped || st.Saved != nil {
		t.Errorf("after the receive: %+v", st)
	}
}

// A VM's owner who is not root may receive a stream only into a VM whose
// QEMU drops to an account of its own (qemu { user }): QEMU parses what
// the sender wrote, and must not do so with root's rights.
func TestReceiveNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run vmstatedctl as another user")
	}
	body := tickingVM(t, 128, "    owner = 65534;\n")
	t.Parallel()
	e := newEnv(t)
	ctl := e.public()
	asRoot := e.addVM("recvroot", body)
	confined := e.addVM("recvuser", strings.Replace(body, "qemu { accel = tcg;", "qemu { accel = tcg; user = nobody;", 1))
	e.start()

	receive := func(vm string) (string, int) {
		t.Helper()
		cmd := exec.Command(ctl, "-s", e.socket, "receive", vm)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Stdin = strings.NewReader("not a saved guest at all")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := receive(asRoot); code != 1 || !strings.Contains(out, "only root may receive") || !strings.Contains(out, "user = ") {
		t.Errorf("the owner receiving into a VM whose QEMU runs as root: exit %d: %s", code, out)
	}
	// Past the check: the stream itself is what is refused.
	if out, code := receive(confined); code != 1 || !strings.Contains(out, "not a saved guest") {
		t.Errorf("the owner receiving into a VM whose QEMU runs as nobody: exit %d: %s", code, out)
	}
}

// While a suspended VM's saved guest is being sent, the VM is not started
// here (the guest would run on two hosts); once the send has gone, it is.
func TestStartDuringSend(t *testing.T) {
	body := tickingVM(t, 128, "")
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("sendstart", body)
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	if out, errOut, code := e.ctl("suspend", vm); code != 0 {
		t.Fatalf("suspend: exit %d: %s%s", code, out, errOut)
	}
	stream, err := d.c.Saved(ctx(t), vm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(stream, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	_, err = d.c.Do(ctx(t), vm, api.ActionStart, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "being sent") {
		t.Errorf("a start during the send: %v", err)
	}
	if st := d.get(vm); st.State != api.StateSuspended || st.Saved == nil {
		t.Errorf("during the send: %+v", st)
	}
	stream.Close()
	waitUntil(t, "a start once the send has gone", func() bool {
		_, err := d.c.Do(ctx(t), vm, api.ActionStart, nil)
		return err == nil
	})
	if st := d.waitUp(vm); !strings.Contains(st.Reason, "restored") {
		t.Errorf("after the send: %+v", st)
	}
}
