//go:build linux

package tests

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
)

// bootWait bounds waiting for a guest's boot under TCG on a busy host.
const bootWait = 4 * time.Minute

// ptyCtl is vmstatedctl running on a pseudo-terminal, as on a user's.
type ptyCtl struct {
	t             *testing.T
	cmd           *exec.Cmd
	master, slave *os.File
	before        *unix.Termios
	out           lockedBuffer
	done          chan struct{}
	code          int
}

func (e *env) ptyCtl(args ...string) *ptyCtl {
	e.t.Helper()
	return e.ptyCtlSized(nil, args...)
}

// ptyCtlSized is ptyCtl on a terminal of window size ws (none if nil).
func (e *env) ptyCtlSized(ws *pty.Winsize, args ...string) *ptyCtl {
	e.t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		e.t.Fatal(err)
	}
	if ws != nil {
		if err := pty.Setsize(master, ws); err != nil {
			e.t.Fatal(err)
		}
	}
	p := &ptyCtl{t: e.t, master: master, slave: slave, done: make(chan struct{})}
	if p.before, err = unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(ctlBin, append([]string{"-s", e.socket}, args...)...)
	p.cmd.Env = e.environ
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
	p.cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go io.Copy(&p.out, master)
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		master.Close()
		slave.Close()
	})
	return p
}

// wait waits until the terminal shows s.
func (p *ptyCtl) wait(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	// What vmstatedctl wrote just before it exited may still be on its
	// way through the terminal: its exit ends nothing here.
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("the terminal never showed %q; it showed:\n%s", s, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ptyCtl) typeIn(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// exit waits for vmstatedctl to end and returns its status.
func (p *ptyCtl) exit() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(guard):
		p.t.Fatalf("vmstatedctl did not exit; it showed:\n%s", p.out.String())
	}
	return p.code
}

// saneAgain checks that the terminal is as it was before vmstatedctl
// ran: raw mode undone.
func (p *ptyCtl) saneAgain() {
	p.t.Helper()
	now, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
	if err != nil {
		p.t.Fatal(err)
	}
	if now.Lflag != p.before.Lflag || now.Iflag != p.before.Iflag || now.Oflag != p.before.Oflag || now.Cflag != p.before.Cflag {
		p.t.Errorf("terminal not restored: lflag %#x iflag %#x oflag %#x, was %#x %#x %#x",
			now.Lflag, now.Iflag, now.Oflag, p.before.Lflag, p.before.Iflag, p.before.Oflag)
	}
	if now.Lflag&(unix.ICANON|unix.ECHO) != unix.ICANON|unix.ECHO {
		p.t.Errorf("terminal left without ICANON and ECHO: %#x", now.Lflag)
	}
}

// One guest, booted by 'start -c', through everything a user does with
// its console: type into the shell, detach, replay, a second writer
// refused, taken over with -f, watched with -r, the daemon killed and
// back, a guest reboot, a stop.
func TestConsoleAttach(t *testing.T) {
	body := guestVM(t)
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("console", body)
	d := e.start()

	// start -c shows the boot from the kernel's banner on.
	a := e.ptyCtl("start", "-c", vm)
	a.wait("Linux version", bootWait)
	a.wait(testguest.ReadyLine, bootWait)
	a.typeIn("echo typed-$((2*21))\r")
	a.wait("typed-42", guard)
	a.typeIn("\x1d") // Ctrl-]
	if code := a.exit(); code != 0 {
		t.Errorf("detach exited %d; it showed:\n%s", code, a.out.String())
	}
	a.wait("[detached]", guard)
	a.saneAgain()

	// -n replays what came before the attach.
	b := e.ptyCtl("console", "-n", "20", vm)
	b.wait("typed-42", guard)

	// A second writer is refused, saying what to do.
	_, errs, code := e.ctl("console", vm)
	if code != 1 || !strings.Contains(errs, "in use") || !strings.Contains(errs, "-f") {
		t.Errorf("second writer: exit %d, %q; want 1 and a hint at -f", code, errs)
	}
	// A watcher is let in and sees what the writer does.
	r := e.ptyCtl("console", "-r", "-n", "0", vm)
	r.wait("read-only", guard)
	// -f takes over: b is told and exits non-zero.
	f := e.ptyCtl("console", "-f", "-n", "0", vm)
	f.wait("Connected", guard)
	b.wait("took over", guard)
	if code := b.exit(); code == 0 {
		t.Error("the client taken over exited 0")
	}
	b.saneAgain()
	f.typeIn("echo forced-$((1+1))\r")
	f.wait("forced-2", guard)
	r.wait("forced-2", guard)

	// The daemon is killed: attached clients say so and fail; what the
	// guest prints meanwhile still reaches the log.
	_ = d.cmd.Process.Kill()
	<-d.done
	for _, c := range []*ptyCtl{f, r} {
		if code := c.exit(); code == 0 {
			t.Errorf("exit 0 when the daemon went away; it showed:\n%s", c.out.String())
		}
		c.wait("the daemon went away", guard)
		c.saneAgain()
	}
	run := filepath.Join(e.runDir, vm)
	conn, err := net.Dial("unix", filepath.Join(run, "serial.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, conn)
	conn.Write([]byte("echo while-down-$((40+2))\n"))
	waitUntil(t, "the answer in console.log", func() bool {
		b, _ := os.ReadFile(filepath.Join(run, "console.log"))
		return strings.Contains(string(b), "while-down-42")
	})
	conn.Close()

	// A new daemon: the console works at once.
	d = e.start()
	d.waitUp(vm)
	e.waitConsole(vm, "while-down-42")
	g := e.ptyCtl("console", "-n", "0", vm)
	g.wait("Connected", guard)
	g.typeIn("echo again-$((3*3))\r")
	g.wait("again-9", guard)

	// A guest reboot: the console comes back by itself, saying so.
	ev := d.events(vm)
	g.typeIn("reboot -f\r")
	g.wait("console is back", bootWait)
	g.wait(testguest.ReadyLine, bootWait)
	g.typeIn("echo rebooted-$((5+5))\r")
	g.wait("rebooted-10", guard)
	ev.waitEnter(t, api.StateRestarting, 1)
	// The log has each boot once, without carriage returns.
	lines := e.consoleLines(vm)
	if n := count(lines, "Linux version"); n != 2 {
		t.Errorf("%d boot banners in the log, want 2 (one per boot):\n%s", n, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.HasSuffix(l, "\r") {
			t.Errorf("console line %q keeps its carriage return", l)
			break
		}
	}

	// A stop ends the session (exit 0, saying why); attaching to a
	// stopped VM is a clear error.
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := g.exit(); code != 0 {
		t.Errorf("exit %d when the VM stopped; it showed:\n%s", code, g.out.String())
	}
	g.wait("has stopped", guard)
	g.saneAgain()
	d.waitState(vm, api.StateStopped)
	_, errs, code = e.ctl("console", vm)
	if code != 1 || !strings.Contains(errs, "stopped") || !strings.Contains(errs, "start -c") {
		t.Errorf("console of a stopped VM: exit %d, %q", code, errs)
	}
}
