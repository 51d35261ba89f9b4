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
func listenFull(t *testing.T) (path string, fd int) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "s.sock")
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
	return path, fd
}

// TestDialSocketWaitsForRoom: a full listen queue (a daemon busy with a
// burst of clients) makes a dial wait, not fail at once, and the dial
// goes through as soon as the daemon accepts.
func TestDialSocketWaitsForRoom(t *testing.T) {
	path, fd := listenFull(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := DialSocket(ctx, path)
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("dial of a full queue: %v, want EAGAIN", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the dial gave up before its context ended: a busy daemon looks dead")
	}

	done := make(chan error, 1)
	go func() {
		c, err := DialSocket(context.Background(), path)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	// Make room: the daemon accepts everything queued.
	nfd, _, err := syscall.Accept(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(nfd)
	// Shutdown wakes the accept loop below when the test ends.
	defer syscall.Shutdown(fd, syscall.SHUT_RDWR)
	go func() {
		for {
			n, _, err := syscall.Accept(fd)
			if err != nil {
				return
			}
			syscall.Close(n)
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("dial after the daemon made room: %v", err)
	}
}
