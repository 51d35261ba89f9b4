package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// listenFull returns a unix socket whose listen queue holds one
// connection, and fills it.
func listenFull(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the queue until a plain connect is refused with EAGAIN.
	for i := 0; ; i++ {
		c, err := net.Dial("unix", path)
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i > 16 {
			t.Skip("this kernel does not bound a unix socket's listen queue")
		}
	}
	return path
}

// TestDialSocketWaitsForRoom: a full listen queue (a daemon busy with a
// burst of clients) makes a dial wait, not fail at once. (That it goes
// through once the daemon accepts is what api/server's flood test sees.)
func TestDialSocketWaitsForRoom(t *testing.T) {
	path := listenFull(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := DialSocket(ctx, path)
	switch {
	case err == nil:
		// The kernel found room after all (its count of a listen queue
		// is not exact under load): nothing to learn from this round.
		c.Close()
	case !errors.Is(err, syscall.EAGAIN):
		t.Fatalf("dial of a full queue: %v, want EAGAIN", err)
	case ctx.Err() == nil:
		t.Fatal("the dial gave up before its context ended: a busy daemon looks dead")
	}
}
