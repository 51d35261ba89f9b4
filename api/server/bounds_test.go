package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// readReply reads one response from c (within the guard) and decodes its
// JSON error body; it fails the test unless the body is one.
func readReply(t *testing.T, br *bufio.Reader, method string) (*http.Response, api.ErrorBody) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	var eb api.ErrorBody
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%d with content type %q: %q", resp.StatusCode, ct, data)
	}
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &eb); err != nil || eb.Code == "" || eb.Error == "" {
			t.Fatalf("%d with body %q: not a JSON error (%v)", resp.StatusCode, data, err)
		}
	}
	return resp, eb
}

// closedAfter reads c to its end: the server must close the connection.
func closedAfter(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(guard))
	rest, err := io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		t.Fatalf("more after the answer: %q", rest)
	}
}

// TestSlowBody: a request whose body never comes, or comes a byte at a
// time, is answered 408 once the body timeout has passed and its
// connection is closed, on every endpoint, streams included; and it
// changes nothing.
func TestSlowBody(t *testing.T) {
	const bodyTimeout = time.Second
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{BodyTimeout: bodyTimeout})
	// The cases run at once; the group ends when all have.
	t.Run("endpoints", func(t *testing.T) { slowBodies(t, d.socket, bodyTimeout) })
	if st, err := d.client.Get(context.Background(), "vm"); err != nil || st.State != api.StateStopped {
		t.Fatalf("after the slow bodies: %+v %v", st, err)
	}
	// A body that does come in time still works, on a connection kept alive.
	c, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(guard))
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(c, "POST /v1/vms/vm/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
			t.Fatal(err)
		}
		if resp, eb := readReply(t, br, "POST"); resp.StatusCode != http.StatusConflict {
			t.Fatalf("stop of a stopped VM with a body: %d %+v", resp.StatusCode, eb)
		}
	}
}

func slowBodies(t *testing.T, socket string, bodyTimeout time.Duration) {
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/vms"},
		{"GET", "/v1/vms/vm"},
		{"POST", "/v1/vms/vm/start"},
		{"POST", "/v1/vms/vm/stop"},
		{"POST", "/v1/reload"},
		{"GET", "/v1/events"},
		{"GET", "/v1/vms/vm/log?follow=true"},
		{"GET", "/v1/nothing-here"},
	} {
		for _, trickle := range []bool{false, true} {
			name := ep.method + " " + ep.path + " silent"
			if trickle {
				name = ep.method + " " + ep.path + " trickle"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c, err := net.Dial("unix", socket)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				begin := time.Now()
				if _, err := io.WriteString(c, ep.method+" "+ep.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				stop := make(chan struct{})
				defer close(stop)
				if trickle {
					// One byte every tenth of the timeout: never enough.
					go func() {
						tick := time.NewTicker(bodyTimeout / 10)
						defer tick.Stop()
						for i := 0; i < 99; i++ {
							select {
							case <-stop:
								return
							case <-tick.C:
							}
							if _, err := c.Write([]byte{' '}); err != nil {
								return
							}
						}
					}()
				}
				_ = c.SetReadDeadline(time.Now().Add(guard))
				br := bufio.NewReader(c)
				resp, eb := readReply(t, br, ep.method)
				t.Logf("answered %d %s after %v (body timeout %v)", resp.StatusCode, eb.Code, time.Since(begin).Round(time.Millisecond), bodyTimeout)
				if resp.StatusCode != http.StatusRequestTimeout || eb.Code != api.CodeRequestTimeout {
					t.Fatalf("answer %d %+v, want 408 %s", resp.StatusCode, eb, api.CodeRequestTimeout)
				}
				closedAfter(t, c, br)
			})
		}
	}
}

// TestMalformedRequestsGetJSON: requests net/http refuses before any
// handler sees them get the API's JSON errors too, also after a good
// request on the same connection; and a handler's output that looks like
// such a reply is sent as it is.
func TestMalformedRequestsGetJSON(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{})
	long := "/v1/vms/" + strings.Repeat("a", 100<<10)
	for _, c := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"bad escape", "GET /v1/vms/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, api.CodeBadRequest},
		{"bad escape in an action", "POST /v1/vms/%zz/start HTTP/1.1\r\nHost: x\r\n\r\n", 400, api.CodeBadRequest},
		{"100 KB path", "GET " + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, api.CodeTooLarge},
		{"100 KB header", "GET /v1/vms HTTP/1.1\r\nHost: x\r\nX-Junk: " + strings.Repeat("j", 100<<10) + "\r\n\r\n", 431, api.CodeTooLarge},
		{"no Host", "GET /v1/vms HTTP/1.1\r\n\r\n", 400, api.CodeBadRequest},
		{"unknown transfer coding", "POST /v1/vms/vm/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, api.CodeNotSupported},
		{"unknown Expect", "GET /v1/vms HTTP/1.1\r\nHost: x\r\nExpect: lots\r\n\r\n", 417, api.CodeBadRequest},
		{"bad protocol", "GET /v1/vms HTTP/9.9\r\nHost: x\r\n\r\n", 505, api.CodeNotSupported},
		{"garbage", "\x00\x01\x02 what\r\n\r\n", 400, api.CodeBadRequest},
	} {
		for _, after := range []bool{false, true} {
			name := c.name
			if after {
				name += " after a good request"
			}
			t.Run(name, func(t *testing.T) {
				conn, err := net.Dial("unix", d.socket)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(guard))
				br := bufio.NewReader(conn)
				if after {
					if _, err := io.WriteString(conn, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						t.Fatal(err)
					}
					if resp, eb := readReply(t, br, "GET"); resp.StatusCode != 200 {
						t.Fatalf("good request: %d %+v", resp.StatusCode, eb)
					}
				}
				// The server may close before it has read all of a
				// long request; what it answered counts.
				go func() { _, _ = io.WriteString(conn, c.req) }()
				resp, eb := readReply(t, br, "GET")
				if resp.StatusCode != c.status || eb.Code != c.code {
					t.Fatalf("answer %d %+v, want %d %s", resp.StatusCode, eb, c.status, c.code)
				}
				t.Logf("%d %s", resp.StatusCode, eb.Error)
			})
		}
	}
	// The log holds text shaped like net/http's plain reply; it arrives
	// unchanged.
	path, err := d.sup.LogPath("vm")
	if err != nil {
		t.Fatal(err)
	}
	fake := "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request\n"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(fake), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, data := raw(t, d.socket, "GET", "/v1/vms/vm/log", "", nil)
	if code != 200 || string(data) != fake {
		t.Fatalf("log: %d %q, want %q", code, data, fake)
	}
}

// TestIdleConnectionClosed: a kept-alive connection on which no next
// request comes is closed once IdleTimeout has passed, so an idle client
// never holds its slot for good.
func TestIdleConnectionClosed(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{IdleTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, eb := readReply(t, br, "GET"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d %+v, close %v", resp.StatusCode, eb, resp.Close)
	}
	closedAfter(t, conn, br)
}

// TestStalledReaderCutOff: a client that asks for a large answer (a VM
// log of megabytes) and never reads it is cut off once a write has not
// gone through within WriteTimeout; its connection does not stay open.
func TestStalledReaderCutOff(t *testing.T) {
	const size = 8 << 20
	prog := fmt.Sprintf(`yes "$(printf '%%0999d' 0)" | head -c %d; echo end-of-output; exec sleep 100000`, size)
	d := startDaemon(t, map[string]string{"vm": fmt.Sprintf("vm {\n hypervisor = exec;\n stop_timeout = 20s;\n exec { command = [\"/bin/sh\", \"-c\", %q]; }\n}\n", prog)},
		server.Options{WriteTimeout: 2 * time.Second})
	d.run("vm")
	// The log holds the whole output once its last line is there.
	end := time.Now().Add(guard)
	for {
		rc, err := d.client.Log(context.Background(), "vm", api.LogOptions{Lines: 5})
		if err != nil {
			t.Fatal(err)
		}
		tail, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(tail, []byte("end-of-output")) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the output never reached the log: %q", tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := d.srv.Connections().Open
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /v1/vms/vm/log HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Not reading: the server's write stalls, and the connection is
	// closed from its side (after it was counted: the write timeout is
	// long enough to see it open).
	waitConns(t, d, "the stalled reader's connection open", func(st server.ConnStats) bool { return st.Open > before })
	waitConns(t, d, "the stalled reader's connection closed", func(st server.ConnStats) bool { return st.Open <= before })
	_ = conn.SetReadDeadline(time.Now().Add(guard))
	n, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection stayed open after %d bytes", n)
	}
	if n >= size {
		t.Fatalf("the whole log (%d bytes) came through to a reader that stalled", n)
	}
	t.Logf("%d bytes reached the stalled reader before the cut", n)
}
