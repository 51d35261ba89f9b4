//go:build linux

package bhyve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/drivertest"
)

func TestNMDMPair(t *testing.T) {
	a, b := NMDMPair("web")
	if a != "/dev/nmdm-web.A" || b != "/dev/nmdm-web.B" {
		t.Errorf("pair of web: %s %s", a, b)
	}
	o := DefaultOptions()
	o.Console = ConsoleNMDM
	s := Settings(hypervisor.Spec{Name: "web"}, o)
	if last := s[len(s)-1]; last.Key != "lpc.com1.path" || last.Value != a {
		t.Errorf("last generated setting %v, want lpc.com1.path=%s", last, a)
	}
	o.Console = "tty"
	if _, err := New().Start(context.Background(), hypervisor.Spec{Name: "web", RunDir: t.TempDir(), Options: &o}); !errors.Is(err, ErrBadSpec) {
		t.Errorf("console = tty: %v, want ErrBadSpec", err)
	}
}

// Linux has no nmdm pairs: a pseudo-terminal stands in. The test holds
// the side bhyve would (the guest's COM1) and links the pair's B name to
// the other, where the driver opens it.
func nmdmStandin(t *testing.T, name string) (guest *os.File) {
	t.Helper()
	dir := t.TempDir()
	old := nmdmDir
	nmdmDir = dir
	t.Cleanup(func() { nmdmDir = old })
	m, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	_, b := NMDMPair(name)
	if err := os.Symlink(s.Name(), b); err != nil {
		t.Fatal(err)
	}
	return m
}

// console = nmdm: COM1 is put on the pair, the daemon holds the other
// side from before bhyve starts, the guest's lines reach Spec.Console,
// what is typed reaches the guest as it was typed, and the handle names
// the pair for the next daemon.
func TestConsoleNMDM(t *testing.T) {
	spec := specWith(t, "lpc.com1.path=stdio\n")
	spec.Options.(*Options).Console = ConsoleNMDM
	guest := nmdmStandin(t, spec.Name)
	cons := &drivertest.Output{}
	spec.Console = cons
	inst, out := start(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, " running\n"); err != nil {
		t.Fatal(err)
	}
	a, b := NMDMPair(spec.Name)
	if got := out.String(); !strings.Contains(got, "config lpc.com1.path="+a+"\n") || strings.Contains(got, "stdio") {
		t.Errorf("bhyve saw\n%s\nwant COM1 on %s, over the config file's", got, a)
	}
	var x extra
	if err := json.Unmarshal(inst.Handle().Extra, &x); err != nil || x.Console != b {
		t.Errorf("handle names console %q (%v), want %s", x.Console, err, b)
	}

	guest.Write([]byte("login: "))
	guest.Write([]byte("\r\nguest line\r\n"))
	if err := cons.WaitFor(ctx, "guest line\r\n"); err != nil {
		t.Fatalf("%v: console %q", err, cons.String())
	}
	c, err := inst.(hypervisor.Consoler).Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(interface{ Resize(uint16, uint16) error }); ok {
		t.Error("a serial line offers a window size")
	}
	seen := &drivertest.Output{}
	go io.Copy(seen, c)
	guest.Write([]byte("second line\r\n"))
	if err := seen.WaitFor(ctx, "second line\r\n"); err != nil {
		t.Fatalf("%v: the connection saw %q", err, seen.String())
	}
	// Raw: a carriage return stays one, and nothing is echoed.
	c.Write([]byte("root\r"))
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 5)
		_, err := io.ReadFull(guest, b)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	select {
	case s := <-got:
		if s != "root\r" {
			t.Errorf("the guest read %q, want %q", s, "root\r")
		}
	case <-time.After(guard):
		t.Fatal("the guest read nothing")
	}
	if strings.Contains(seen.String(), "root") {
		t.Errorf("what was typed came back: %q", seen.String())
	}

	// The exit closes the daemon's side and ends the connection.
	inst.Kill()
	waitExit(t, inst)
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("the connection after the exit: %v", err)
	}
}

// A new daemon whose pair cannot be opened still re-adopts the VM, and
// says why it has no console.
func TestRecoverConsoleMissing(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "exit")
	spec := specWith(t, "standin.mode=stubborn\n")
	first, out := start(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := out.WaitFor(ctx, "running\n"); err != nil {
		t.Fatal(err)
	}
	h := first.Handle()
	h.Extra, _ = json.Marshal(extra{Name: spec.Name, Output: filepath.Join(h.RunDir, OutputFile), Console: fifo + ".nothing"})
	spec.RunDir = h.RunDir
	log := &drivertest.Output{}
	spec.Output = log
	rec, err := New().Recover(ctx, spec, h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { rec.Kill(); <-rec.Done() }()
	_, err = rec.(hypervisor.Consoler).Console(ctx)
	if !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), ".nothing") {
		t.Errorf("console of a VM whose pair is gone: %v", err)
	}
	if sc := bufio.NewScanner(strings.NewReader(log.String())); !sc.Scan() || !strings.Contains(sc.Text(), "console cannot be had") {
		t.Errorf("the log does not say so: %q", log.String())
	}
}

// Without console = nmdm there is no console, and saying so is at once.
func TestNoConsole(t *testing.T) {
	inst, _ := start(t, specWith(t, "standin.mode=stubborn\n"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := inst.(hypervisor.Consoler).Console(ctx); !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "console = nmdm") {
		t.Errorf("console: %v", err)
	}
}
