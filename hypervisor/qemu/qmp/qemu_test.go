package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startQEMU runs a diskless TCG machine with a QMP socket and returns the
// socket path. The process is killed when the test ends.
func startQEMU(t *testing.T) (string, *exec.Cmd, <-chan struct{}) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed; install qemu-system-x86 to run this test")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(bin, "-machine", "q35,accel=tcg", "-m", "64", "-nodefaults",
		"-display", "none", "-no-reboot",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(guard)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited before creating its QMP socket")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu did not create its QMP socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sock, cmd, exited
}

func nextEvent(t *testing.T, s *Subscription, name string) Event {
	t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("subscription closed while waiting for %s", name)
			}
			if e.Name == name {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s event", name)
		}
	}
}

func TestRealQEMU(t *testing.T) {
	sock, cmd, exited := startQEMU(t)
	sub := NewSubscription(32)
	// The socket file appears at bind(), a moment before listen().
	var c *Client
	var err error
	for deadline := time.Now().Add(guard); ; {
		if c, err = Dial(ctxT(t), sock, WithSubscription(sub)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer c.Close()
	if c.Greeting().Version.Major < 2 {
		t.Errorf("greeting %+v", c.Greeting())
	}

	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Run(ctxT(t), "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Fatalf("query-status: %v %+v", err, st)
	}

	if err := c.Run(ctxT(t), "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, "STOP")
	if err := c.Run(ctxT(t), "query-status", nil, &st); err != nil || st.Status != "paused" {
		t.Fatalf("query-status after stop: %v %+v", err, st)
	}
	if err := c.Run(ctxT(t), "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, "RESUME")

	_, err = c.Execute(ctxT(t), "no-such-command", nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("unknown command: %v", err)
	}

	// Many concurrent calls, each matched to its own reply.
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			var v struct {
				QEMU struct{ Major int } `json:"qemu"`
			}
			err := c.Run(ctxT(t), "query-version", nil, &v)
			if err == nil && v.QEMU.Major != c.Greeting().Version.Major {
				err = errors.New("query-version reply does not match")
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// quit: SHUTDOWN first, then the reply or the socket closing.
	_, err = c.Execute(ctxT(t), "quit", nil)
	if err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("quit: %v", err)
	}
	e := nextEvent(t, sub, "SHUTDOWN")
	var data struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil || data.Reason != "host-qmp-quit" {
		t.Errorf("SHUTDOWN data %s", e.Data)
	}
	select {
	case <-c.Done():
	case <-time.After(guard):
		t.Fatal("connection not closed after quit")
	}
	if _, err := c.Execute(context.Background(), "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after QEMU exited: %v", err)
	}
	<-exited
	if cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("qemu exit status %v after quit", cmd.ProcessState)
	}
}

func BenchmarkRealQEMUQueryStatus(b *testing.B) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		b.Skip("qemu-system-x86_64 is not installed")
	}
	dir := b.TempDir()
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(bin, "-machine", "q35,accel=tcg", "-m", "64", "-nodefaults",
		"-display", "none", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var c *Client
	for i := 0; ; i++ {
		c, err = Dial(context.Background(), sock)
		if err == nil {
			break
		}
		if i > 2000 {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Execute(ctx, "query-status", nil); err != nil {
			b.Fatal(err)
		}
	}
}
