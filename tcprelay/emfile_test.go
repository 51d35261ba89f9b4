//go:build linux

package tcprelay

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// acceptFailed reports whether the accept loop is no longer waiting for
// a connection: it has met an error (and given up, or waits to retry).
func acceptFailed() bool {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "tcprelay.(*Relay).accept(") && strings.Contains(strings.SplitN(g, "\n", 2)[0], "[IO wait") {
			return false
		}
	}
	return true
}

// A process out of descriptors cannot accept a connection for a while;
// the relay goes on accepting once it can again, instead of stopping for
// good while it still seems to listen (its address in the status).
func TestRelayOutOfDescriptors(t *testing.T) {
	r, err := Listen("127.0.0.1:0", echoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Take every descriptor the limit allows, but one, for the client.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	release := func() {
		// The limit first: the relay and the echo server behind it may
		// take descriptors the moment there are some.
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
		for _, f := range held {
			f.Close()
		}
		held = nil
	}
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		held = append(held, f)
	}
	if len(held) == 0 {
		t.Fatal("no descriptor to spare for the client")
	}
	held[len(held)-1].Close()
	held = held[:len(held)-1]
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	deadline := time.Now().Add(30 * time.Second)
	for !acceptFailed() {
		if time.Now().After(deadline) {
			t.Fatal("the relay accepted a connection with no descriptor to spare")
		}
		runtime.Gosched()
	}
	release()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("hello\n"))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("once descriptors were free again: read %q, %v", line, err)
	}
}
