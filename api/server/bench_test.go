package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// benchDaemon serves 100 stopped exec VMs.
func benchDaemon(b *testing.B) *daemon {
	vms := map[string]string{}
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("vm%03d", i)
		vms[n] = sleeper(n, "")
	}
	return startDaemon(b, vms, server.Options{Logf: func(string, ...any) {}})
}

// BenchmarkGet measures one status request over the socket.
func BenchmarkGet(b *testing.B) {
	d := benchDaemon(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.client.Get(ctx, "vm042"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList measures listing 100 VMs over the socket.
func BenchmarkList(b *testing.B) {
	d := benchDaemon(b)
	ctx := context.Background()
	for b.Loop() {
		if l, err := d.client.List(ctx); err != nil || len(l) != 100 {
			b.Fatal(len(l), err)
		}
	}
}

// BenchmarkGetParallel measures status requests from many clients at once.
func BenchmarkGetParallel(b *testing.B) {
	d := benchDaemon(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		c := api.NewClient(d.socket)
		defer c.Close()
		for pb.Next() {
			if _, err := c.Get(ctx, "vm042"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefusal measures how fast the daemon turns away a connection
// over its cap: dial, read the 503, close. It bounds how long a caller
// waits behind a queue of refused connections.
func BenchmarkRefusal(b *testing.B) {
	d := startDaemon(b, nil, server.Options{MaxConns: 2, ReservedConns: 1, Logf: func(string, ...any) {}})
	for i := 0; i < 2; i++ {
		c, err := net.Dial("unix", d.socket)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
	}
	buf := make([]byte, 512)
	for b.Loop() {
		c, err := net.Dial("unix", d.socket)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		n, err := io.ReadAtLeast(c, buf, len("HTTP/1.1 503"))
		if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 503")) {
			b.Fatalf("%q %v", buf[:n], err)
		}
		c.Close()
	}
}
