package qga_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor/qemu/qga"
)

// listen serves one connection on a unix socket with serve.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return sock
}

// A guest without an agent: QEMU accepts the connection and nothing ever
// answers. Dial gives up when its context ends.
func TestDialNoAgent(t *testing.T) {
	sock := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	_, err := qga.Dial(ctxFor(t, 200*time.Millisecond), sock)
	if !errors.Is(err, qga.ErrNoAgent) {
		t.Fatalf("got %v, want ErrNoAgent", err)
	}
}

// A hostile agent: stale lines and a wrong sync id before the right one,
// then a reply full of terminal controls, then a reply too long to keep.
func TestHostileAgent(t *testing.T) {
	sock := listen(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		b, _ := r.ReadBytes('\n')
		var req struct {
			Arguments struct {
				ID int64 `json:"id"`
			} `json:"arguments"`
		}
		json.Unmarshal(b[1:], &req) // after the 0xFF
		fmt.Fprintf(c, "{\"return\": {}}\n\xff{\"return\": 1}\nnot json\n\xff{\"return\": %d}\n", req.Arguments.ID)
		r.ReadBytes('\n')
		io.WriteString(c, `{"return": {"host-name": "evil\u001b[2J\u0007host"}}`+"\n")
		r.ReadBytes('\n')
		io.WriteString(c, `{"return": "`+strings.Repeat("x", qga.MaxReply)+`"}`+"\n")
	})
	c, err := qga.Dial(ctxFor(t, 5*time.Second), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Hostname(ctxFor(t, 5*time.Second))
	if err != nil || h != "evil?[2J?host" {
		t.Errorf("host name %q, %v; want the controls replaced", h, err)
	}
	if _, err := c.Hostname(ctxFor(t, 5*time.Second)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an oversized reply: %v", err)
	}
	if err := c.Ping(ctxFor(t, time.Second)); !errors.Is(err, qga.ErrBroken) {
		t.Errorf("after an oversized reply: %v, want ErrBroken", err)
	}
}
