//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/vmstated/vmstated/api"
)

// An exec VM with console = pty running a shell: typed into through
// vmstatedctl console, its output in the log, its window size the
// client's terminal's (at attach and after a resize), and all of it again
// after the daemon was killed and started anew, with what the shell
// printed meanwhile in the log, and after a reboot.
func TestExecConsolePTY(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a new daemon takes the terminal back with pidfd_getfd, which needs ptrace rights over a process that is not its descendant: run as root")
	}
	t.Parallel()
	e := newEnv(t)
	// An interactive shell ignores SIGTERM; SIGHUP ends it.
	vm := e.addVM("ptycons", execVM([]string{"/bin/sh"}, "stop_signal = HUP; console = pty; reboot_exit_codes = [ 7 ];"))
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)

	a := e.ptyCtlSized(&pty.Winsize{Rows: 31, Cols: 97}, "console", "-n", "0", vm)
	a.wait("Connected", guard)
	a.typeIn("echo typed-$((2*21))\r")
	a.wait("typed-42", guard)
	e.waitConsole(vm, "typed-42")

	// The window size at attach, then after the client's terminal changed.
	a.typeIn("stty size\r")
	a.wait("31 97", guard)
	if err := pty.Setsize(a.master, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// The new size travels on its own, beside what is typed: ask until
	// the answer has it.
	waitUntil(t, "stty size to answer 40 120", func() bool {
		a.typeIn("stty size\r")
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(a.out.String(), "40 120") {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})

	// The shell waits for a file, then prints: it does so while no daemon
	// runs, into its terminal.
	gate := filepath.Join(e.work, "print-now")
	a.typeIn("while [ ! -e " + gate + " ]; do sleep 0.05; done; echo while-down-$((40+2))\r")
	a.wait("echo while-down-$((40+2))", guard) // the shell has the line
	_ = d.cmd.Process.Kill()
	<-d.done
	if code := a.exit(); code == 0 {
		t.Errorf("exit 0 when the daemon went away; it showed:\n%s", a.out.String())
	}
	a.wait("the daemon went away", guard)
	a.saneAgain()
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// A new daemon takes the terminal back: what waited in it reaches
	// the log, and the console works with the new client's size.
	d = e.start()
	d.waitUp(vm)
	e.waitConsole(vm, "while-down-42")
	g := e.ptyCtlSized(&pty.Winsize{Rows: 50, Cols: 150}, "console", "-n", "0", vm)
	g.wait("Connected", guard)
	g.typeIn("echo again-$((3*3))\r")
	g.wait("again-9", guard)
	g.typeIn("stty size\r")
	g.wait("50 150", guard)

	// A reboot (exit 7): a new terminal, back by itself in the session,
	// with the session's window size.
	g.typeIn("exit 7\r")
	g.wait("console is back", guard)
	d.waitUp(vm)
	g.typeIn("stty size\r")
	waitUntil(t, "stty size on the new terminal", func() bool { return strings.Count(g.out.String(), "50 150") >= 2 })

	// A stop ends the session, saying why.
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := g.exit(); code != 0 {
		t.Errorf("exit %d when the VM stopped; it showed:\n%s", code, g.out.String())
	}
	g.wait("has stopped", guard)
	d.waitState(vm, api.StateStopped)

	// start -c: started and attached, with the terminal's size.
	c := e.ptyCtlSized(&pty.Winsize{Rows: 33, Cols: 88}, "start", "-c", vm)
	c.wait("Connected", guard)
	c.wait("# ", guard) // the shell's prompt: the console is there
	c.typeIn("stty size\r")
	c.wait("33 88", guard)
}
