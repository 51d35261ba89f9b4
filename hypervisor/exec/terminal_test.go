//go:build linux

package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
)

// ptyDaemonEnv makes the test binary a short-lived daemon that starts a
// console = pty VM in the run directory it names, waits for its first
// line, prints the handle and exits, leaving the VM running.
const ptyDaemonEnv = "VMSTATED_EXEC_TEST_PTY_DAEMON_RUNDIR"

// The VM says whether its stdio and controlling terminal are the
// terminal, waits for a file named "go", says so (to a terminal nobody
// may be reading), then answers every line with the line and its window
// size, and exits on "quit" saying bye.
const ptyScript = `[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo ctty-ok > /dev/tty && stty size && echo ready
while [ ! -e go ]; do sleep 0.05; done; echo gone-ahead
while read -r l; do [ "$l" = quit ] && { echo bye; exit 0; }; echo "got $l"; stty size; done`

func init() { daemons[ptyDaemonEnv] = ptyAsDaemon }

func ptySpec(runDir string, console, out io.Writer) hypervisor.Spec {
	return hypervisor.Spec{Name: "p", RunDir: runDir, Output: out, Console: console,
		Options: &Options{Command: []string{"/bin/sh", "-c", ptyScript}, Console: ConsolePTY}}
}

func ptyAsDaemon(runDir string) int {
	cons := &drivertest.Output{}
	inst, err := New().Start(context.Background(), ptySpec(runDir, cons, io.Discard))
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := cons.WaitFor(ctx, "ready\r\n"); err != nil {
		fmt.Println("ERROR", err, cons.String())
		return 1
	}
	h, _ := json.Marshal(inst.Handle())
	fmt.Printf("HANDLE %s\n", h)
	return 0 // without stopping anything, as a crashing daemon would
}

// attachTerminal connects to inst's console and collects what it says.
func attachTerminal(t *testing.T, inst hypervisor.Instance) (io.ReadWriteCloser, *drivertest.Output) {
	t.Helper()
	c, err := inst.(hypervisor.Consoler).Console(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := &drivertest.Output{}
	go io.Copy(seen, c)
	t.Cleanup(func() { c.Close() })
	return c, seen
}

// lines is an Output that also keeps each write.
type lines struct {
	drivertest.Output
	mu sync.Mutex
	w  []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.w = append(l.w, string(p))
	l.mu.Unlock()
	return l.Output.Write(p)
}

func (l *lines) writes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.w...)
}

type waiter interface {
	WaitFor(ctx context.Context, s string) error
	String() string
}

func waitFor(t *testing.T, o waiter, s, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := o.WaitFor(ctx, s); err != nil {
		t.Fatalf("%s never showed %q: %q", what, s, o.String())
	}
}

// A console = pty VM: its stdio and controlling terminal are the
// terminal, its lines reach Spec.Console whole, what is typed reaches it,
// a resize reaches it, and its last words are in Spec.Console once Done
// is closed.
func TestTerminal(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	cons := &lines{}
	out := &drivertest.Output{}
	inst, err := New().Start(context.Background(), ptySpec(runDir, cons, out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Kill(); <-inst.Done() })
	waitFor(t, cons, "ctty-ok\r\n24 80\r\nready\r\n", "the console")

	// The daemon's side sits at TerminalFD in the program.
	h := inst.Handle()
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", h.PID, TerminalFD)); l != "/dev/ptmx" {
		t.Errorf("descriptor %d of the VM is %q, want /dev/ptmx", TerminalFD, l)
	}

	if err := os.WriteFile(filepath.Join(runDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cons, "gone-ahead\r\n", "the console")
	c, seen := attachTerminal(t, inst)
	if err := c.(interface{ Resize(rows, cols uint16) error }).Resize(33, 101); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, seen, "got hello\r\n33 101\r\n", "the connection")

	// A second connection replaces the first, which reads EOF.
	c2, seen2 := attachTerminal(t, inst)
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("the replaced connection: %v", err)
	}
	c2.Write([]byte("again\n"))
	waitFor(t, seen2, "got again\r\n", "the second connection")

	c2.Write([]byte("quit\n"))
	waitExit(t, inst)
	got := cons.String()
	if !strings.HasSuffix(got, "bye\r\n") {
		t.Errorf("the console's last line is not bye: %q", got)
	}
	// One Write per line: the log stamps each.
	for _, w := range cons.writes() {
		if strings.Count(w, "\n") != 1 || !strings.HasSuffix(w, "\n") {
			t.Errorf("a write to Spec.Console is not one line: %q", w)
		}
	}
	if !strings.Contains(got, "\r\nhello\r\ngot hello\r\n") { // echoed, answered
		t.Errorf("console %q", got)
	}
	if out.String() != "" {
		t.Errorf("Spec.Output got %q; a terminal's output is the console's", out.String())
	}
	if _, err := inst.(hypervisor.Consoler).Console(context.Background()); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("console after the exit: %v, want ErrExited", err)
	}
}

// The terminal outlives the daemon that started the VM: another process
// starts it and exits, the VM writes to its terminal meanwhile, and this
// process takes the terminal back, gets what waited in it and types.
func TestTerminalAfterDaemonExit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("taking the terminal back from a process that is not one's descendant needs ptrace rights: run as root")
	}
	runDir := filepath.Join(t.TempDir(), "run")
	h := firstDaemon(t, ptyDaemonEnv, runDir)
	// No daemon reads the terminal now: the VM writes into it all the same.
	if err := os.WriteFile(filepath.Join(runDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	cons := &drivertest.Output{}
	// The config has no console now: the handle's terminal counts.
	spec := ptySpec(runDir, cons, io.Discard)
	spec.Options = &Options{Command: []string{"/bin/sh", "-c", ptyScript}}
	inst, err := New().Recover(context.Background(), spec, h)
	if err != nil {
		t.Fatalf("Recover after the first daemon exited: %v", err)
	}
	t.Cleanup(func() { inst.Kill(); <-inst.Done() })
	waitFor(t, cons, "gone-ahead\r\n", "the console after the restart")
	if strings.Contains(cons.String(), "ready") {
		t.Errorf("the first daemon's output came again: %q", cons.String())
	}
	c, seen := attachTerminal(t, inst)
	c.(interface{ Resize(rows, cols uint16) error }).Resize(25, 81)
	c.Write([]byte("back\n"))
	waitFor(t, seen, "got back\r\n25 81\r\n", "the connection after the restart")
}

// Without console = pty there is no console, and saying so takes no
// time, whatever the context.
func TestNoTerminal(t *testing.T) {
	inst, _ := run(t, shSpec("sleep 100", Options{}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := inst.(hypervisor.Consoler).Console(ctx)
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "console = pty") {
		t.Errorf("console of a VM without one: %v", err)
	}
}

// A bad console option is refused before anything runs.
func TestTerminalOption(t *testing.T) {
	spec := hypervisor.Spec{Name: "b", RunDir: t.TempDir(), Options: &Options{Command: []string{"/bin/true"}, Console: "tty"}}
	if _, err := New().Start(context.Background(), spec); !errors.Is(err, ErrBadOptions) {
		t.Errorf("console = tty: %v, want ErrBadOptions", err)
	}
}

// A terminal that cannot be taken back (the descriptor is no terminal
// any more) leaves the VM re-adopted, without a console, saying why.
func TestTerminalLost(t *testing.T) {
	inst, _ := run(t, shSpec("sleep 100", Options{}))
	h := inst.Handle()
	// Descriptor 1 is the program's output file, not a terminal.
	h.Extra, _ = json.Marshal(extra{Output: filepath.Join(h.RunDir, OutputFile), TerminalFD: 1})
	out := &drivertest.Output{}
	rec, err := New().Recover(context.Background(), hypervisor.Spec{Name: "t", RunDir: h.RunDir, Output: out, Options: &Options{Command: []string{"/bin/sh"}}}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Kill(); <-rec.Done() })
	_, err = rec.(hypervisor.Consoler).Console(context.Background())
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "no longer the terminal") {
		t.Errorf("console: %v", err)
	}
	if !strings.Contains(out.String(), "console cannot be had until the VM restarts") {
		t.Errorf("the log does not say so: %q", out.String())
	}
}

// A program that put another terminal at TerminalFD (it closed the
// descriptor, then opened a pseudo-terminal of its own, as a launcher
// running a child on a terminal may) is not taken at its word: the
// daemon's terminal is the one the handle names, and a console joined to
// any other would read what is not the VM's console and type into it.
func TestTerminalReplaced(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("taking a terminal from a process needs ptrace rights: run as root")
	}
	cons := &drivertest.Output{}
	spec := hypervisor.Spec{Name: "r", RunDir: filepath.Join(t.TempDir(), "run"), Output: io.Discard, Console: cons,
		Options: &Options{Command: []string{"/bin/sh", "-c", fmt.Sprintf("exec %d<&-; exec %d<>/dev/ptmx; echo ready; sleep 100", TerminalFD, TerminalFD)}, Console: ConsolePTY}}
	inst, err := New().Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Kill(); <-inst.Done() })
	waitFor(t, cons, "ready\r\n", "the console")

	out := &drivertest.Output{}
	rec, err := New().Recover(context.Background(), hypervisor.Spec{Name: "r", RunDir: spec.RunDir, Output: out, Options: spec.Options}, inst.Handle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Kill(); <-rec.Done() })
	_, err = rec.(hypervisor.Consoler).Console(context.Background())
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "another terminal") {
		t.Errorf("console of a VM whose descriptor %d is another terminal: %v", TerminalFD, err)
	}
	if !strings.Contains(out.String(), "console cannot be had until the VM restarts") {
		t.Errorf("the log does not say so: %q", out.String())
	}
}
