package ttyconsole

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
)

// writes keeps every Write.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, string(p))
	return len(p), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

// pair is a device and the VM's side of it: a socket pair stands in for
// a terminal.
func pair(t *testing.T) (dev, vm *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}
	dev, vm = os.NewFile(uintptr(fds[0]), "dev"), os.NewFile(uintptr(fds[1]), "vm")
	t.Cleanup(func() { vm.Close() })
	return dev, vm
}

func readUntil(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 256)
		for !strings.Contains(b.String(), want) {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("read %q, want %q", s, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("never read %q", want)
	}
}

func TestConsole(t *testing.T) {
	dev, vm := pair(t)
	log := &writes{}
	c := New(dev, nil, log, nil)

	cn, err := c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cn.(interface{ Resize(uint16, uint16) error }); ok {
		t.Error("a console without a resize function offers Resize")
	}
	vm.Write([]byte("one\r\ntw"))
	vm.Write([]byte("o\r\n" + strings.Repeat("x", maxLine+10)))
	readUntil(t, cn, "two\r\n")
	cn.Write([]byte("typed"))
	readUntil(t, vm, "typed")

	// A new connection ends the one before.
	cn2, err := c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(cn); err != nil {
		t.Errorf("the replaced connection: %v", err)
	}
	vm.Write([]byte("three"))
	readUntil(t, cn2, "three")

	// The VM's side closes: the last partial line is logged, Close
	// returns at once, and the console is over.
	vm.Close()
	if msg := c.Close(); msg != "" {
		t.Errorf("Close: %q", msg)
	}
	want := []string{"one\r\n", "two\r\n", strings.Repeat("x", maxLine) + "\n", strings.Repeat("x", 10) + "three\n"}
	if got := log.all(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log writes %q, want %q", got, want)
	}
	if _, err := c.Connect(context.Background()); !errors.Is(err, hypervisor.ErrExited) {
		t.Errorf("Connect after the end: %v, want ErrExited", err)
	}
}

func TestConsoleResize(t *testing.T) {
	dev, _ := pair(t)
	var got [2]uint16
	c := New(dev, nil, nil, func(_ *os.File, rows, cols uint16) error { got = [2]uint16{rows, cols}; return nil })
	t.Cleanup(func() { dev.Close() })
	cn, err := c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rz, ok := cn.(interface{ Resize(uint16, uint16) error })
	if !ok {
		t.Fatal("no Resize")
	}
	rz.Resize(24, 80)
	if got != [2]uint16{24, 80} {
		t.Errorf("resized to %v", got)
	}
}

// A console that could not be had says why, at once.
func TestConsoleMissing(t *testing.T) {
	c := New(nil, errors.New("no such device"), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Connect(ctx); !errors.Is(err, hypervisor.ErrNotSupported) || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("Connect: %v", err)
	}
	if msg := c.Close(); msg != "" {
		t.Errorf("Close: %q", msg)
	}
}

// What the VM writes while no connection reads (before the relay has
// connected, or between two) comes first on the next connection, the
// last maxBacklog bytes of it.
func TestConsoleBacklog(t *testing.T) {
	dev, vm := pair(t)
	log := &writes{}
	c := New(dev, nil, log, nil)
	vm.Write([]byte("early\r\n"))
	waitLogged := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(strings.Join(log.all(), ""), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%q never reached the log", want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLogged("early")
	cn, err := c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, cn, "early\r\n")
	cn.Close()
	big := strings.Repeat("y", maxBacklog) + "tail\r\n"
	vm.Write([]byte(big))
	waitLogged("tail")
	cn, err = c.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, maxBacklog)
	if _, err := io.ReadFull(cn, got); err != nil {
		t.Fatal(err)
	}
	if want := big[len(big)-maxBacklog:]; string(got) != want {
		t.Errorf("the backlog is not the last %d bytes written", maxBacklog)
	}
	vm.Write([]byte("live"))
	readUntil(t, cn, "live")
	vm.Close()
	c.Close()
}
