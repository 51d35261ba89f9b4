package tcprelay

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// echoSocket serves a unix socket that echoes what it reads.
func echoSocket(t *testing.T) string {
	dir, err := os.MkdirTemp("", "relay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// Out of descriptors (TestRelayOutOfDescriptors).
				time.Sleep(time.Millisecond)
				continue
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return path
}

func TestRelay(t *testing.T) {
	r, err := Listen("127.0.0.1:0", echoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("hello\n"))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	// The same port can be listened on again once closed (a restarted
	// daemon takes its port back).
	addr := r.Addr().String()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a relayed connection outlived Close")
	}
	r2, err := Listen(addr, echoSocket(t))
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	r2.Close()
}

// A socket nobody serves: the client is let go at once.
func TestRelayNoTarget(t *testing.T) {
	r, err := Listen("127.0.0.1:0", filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read data from a relay with nothing behind it")
	}
}
