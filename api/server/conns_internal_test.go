package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/peercred"
)

func TestNewLimits(t *testing.T) {
	for _, c := range []struct {
		name                    string
		total, perUser, reserve int
		nofile                  uint64
		want                    limits
	}{
		{"defaults", 0, 0, 0, 1 << 20, limits{DefaultMaxConns, DefaultMaxConnsPerUser, DefaultReservedConns}},
		{"half the descriptors", 0, 0, 0, 1024, limits{512 - refusers, DefaultMaxConnsPerUser, DefaultReservedConns}},
		{"per user within the others' share", 100, 500, 20, 1 << 20, limits{100, 80, 20}},
		{"reserve at most half", 10, 0, 64, 1 << 20, limits{10, 5, 5}},
		{"tiny descriptor limit", 0, 0, 0, 3, limits{2, 1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := newLimits(c.total, c.perUser, c.reserve, c.nofile); got != c.want {
				t.Fatalf("newLimits(%d, %d, %d, %d) = %+v, want %+v", c.total, c.perUser, c.reserve, c.nofile, got, c.want)
			}
		})
	}
}

func uidPeer(uid uint32) peer { return peer{cred: peercred.Cred{UID: uid, GID: uid}, known: true} }

func TestTrackerCaps(t *testing.T) {
	var lines []string
	tr := newTracker(limits{total: 10, perUser: 4, reserved: 3},
		func(p peer) bool { return p.known && p.cred.UID == 0 },
		func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	admit := func(p peer, wantStatus int) {
		t.Helper()
		why := tr.admit(p)
		switch {
		case wantStatus == 0 && why != nil:
			t.Fatalf("uid %d refused: %d %s", p.cred.UID, why.status, why.msg)
		case wantStatus != 0 && why == nil:
			t.Fatalf("uid %d admitted, want %d", p.cred.UID, wantStatus)
		case wantStatus != 0 && why.status != wantStatus:
			t.Fatalf("uid %d refused with %d (%s), want %d", p.cred.UID, why.status, why.msg, wantStatus)
		}
	}
	for i := 0; i < 4; i++ {
		admit(uidPeer(1000), 0)
	}
	admit(uidPeer(1000), http.StatusTooManyRequests) // its own cap
	for i := 0; i < 3; i++ {
		admit(uidPeer(1001), 0)
	}
	// 7 = total - reserved: no other user gets in, not even unknown peers.
	admit(uidPeer(1002), http.StatusServiceUnavailable)
	admit(peer{}, http.StatusServiceUnavailable)
	// Root has the reserve.
	for i := 0; i < 3; i++ {
		admit(uidPeer(0), 0)
	}
	admit(uidPeer(0), http.StatusServiceUnavailable) // now everything is taken
	tr.release(uidPeer(1000))
	admit(uidPeer(1002), 0)
	tr.release(uidPeer(0))
	admit(uidPeer(0), 0)
	st := tr
	if st.total != 10 || st.others != 7 || st.byUID[1000] != 3 || st.byUID[1002] != 1 {
		t.Fatalf("counts: total %d others %d by uid %v", st.total, st.others, st.byUID)
	}
	for _, uid := range []uint32{0, 0, 0, 1000, 1000, 1000, 1001, 1001, 1001, 1002} {
		tr.release(uidPeer(uid))
	}
	if tr.total != 0 || tr.others != 0 || len(tr.byUID) != 0 {
		t.Fatalf("after releasing all: total %d others %d by uid %v", tr.total, tr.others, tr.byUID)
	}
	// Unknown peers share one bucket with the per-user cap.
	for i := 0; i < 4; i++ {
		admit(peer{}, 0)
	}
	admit(peer{}, http.StatusTooManyRequests)
}

// TestRefusalLogRate: a flood of refusals makes one log line per
// refusalLogEvery, which counts the ones left out.
func TestRefusalLogRate(t *testing.T) {
	var lines []string
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newTracker(limits{total: 1, perUser: 1, reserved: 1}, func(peer) bool { return false },
		func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	tr.now = func() time.Time { return clock }
	why := &refusal{http.StatusTooManyRequests, "over"}
	for i := 0; i < 1000; i++ {
		c := &nopConn{}
		tr.refuse(c, uidPeer(1000), why)
		clock = clock.Add(25 * time.Millisecond) // 25 s in all
	}
	if len(lines) != 3 {
		t.Fatalf("%d log lines for 1000 refusals in 25 s, want 3:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[1], "and 399 more since") || !strings.Contains(lines[0], "uid 1000") {
		t.Fatalf("log lines: %q", lines)
	}
	if tr.refused != 1000 {
		t.Fatalf("refused = %d", tr.refused)
	}
}

func TestRefusalResponse(t *testing.T) {
	resp, err := http.ReadResponse(bufioReader(refusalResponse(&refusal{http.StatusTooManyRequests, "uid 5 holds 64"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 || eb.Code != api.CodeTooManyConnections || eb.Error != "uid 5 holds 64" || !resp.Close {
		t.Fatalf("%d %+v close %v", resp.StatusCode, eb, resp.Close)
	}
}

// TestJSONReply turns net/http's own replies, in the forms its server
// writes them, into JSON, and leaves everything else alone.
func TestJSONReply(t *testing.T) {
	const hdr = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	for _, c := range []struct {
		in     string
		status int
		code   string
		want   string // in the message
	}{
		{"HTTP/1.1 400 Bad Request" + hdr + "400 Bad Request", 400, api.CodeBadRequest, "two-digit hex escape"},
		{"HTTP/1.1 400 Bad Request: missing required Host header" + hdr + "400 Bad Request: missing required Host header", 400, api.CodeBadRequest, "missing required Host header"},
		{"HTTP/1.1 431 Request Header Fields Too Large" + hdr + "431 Request Header Fields Too Large", 431, api.CodeTooLarge, "64 KiB"},
		{"HTTP/1.1 501 Not Implemented" + hdr + "Unsupported transfer encoding", 501, api.CodeNotSupported, "transfer encoding"},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + hdr + "505 HTTP Version Not Supported: unsupported protocol version", 505, api.CodeNotSupported, "unsupported protocol version"},
		{"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 417, api.CodeBadRequest, "Expect"},
		{"HTTP/1.0 417 Expectation Failed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 417, api.CodeBadRequest, "Expect"},
	} {
		out, ok := jsonReply([]byte(c.in))
		if !ok {
			t.Errorf("%q: not rewritten", c.in)
			continue
		}
		resp, err := http.ReadResponse(bufioReader(out), nil)
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		var eb api.ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		if resp.StatusCode != c.status || eb.Code != c.code || !strings.Contains(eb.Error, c.want) ||
			resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
			t.Errorf("%q -> %d %+v (headers %v)", c.in, resp.StatusCode, eb, resp.Header)
		}
	}
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 400 Bad Request", // no end of headers
		"some log line\r\n\r\n",
		"HTTP/1.1 4xx Odd\r\n\r\n",
		"HTTP/2.0 400 Bad Request\r\n\r\n",
	} {
		if out, ok := jsonReply([]byte(in)); ok {
			t.Errorf("%q rewritten to %q", in, out)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// nopConn is a connection that takes every write and has nothing to read.
type nopConn struct{ net.Conn }

func (*nopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (*nopConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (*nopConn) Close() error                     { return nil }
func (*nopConn) SetDeadline(time.Time) error      { return nil }
func (*nopConn) SetWriteDeadline(time.Time) error { return nil }

// TestRefusalWaitsForTheRequest: a refused connection is answered after
// its request, not before (an HTTP client would take that for a broken
// connection); connections that send nothing make room for newer ones,
// unanswered.
func TestRefusalWaitsForTheRequest(t *testing.T) {
	tr := newTracker(limits{total: 1, perUser: 1, reserved: 1}, func(peer) bool { return false }, func(string, ...any) {})
	why := &refusal{http.StatusTooManyRequests, "over"}
	var clients []net.Conn
	for i := 0; i < refusers+1; i++ {
		srv, cli := net.Pipe()
		defer cli.Close()
		_ = cli.SetDeadline(time.Now().Add(time.Minute))
		clients = append(clients, cli)
		tr.refuse(srv, uidPeer(1000), why)
	}
	if n, err := clients[0].Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the oldest silent connection: read %d, %v; want it closed unanswered", n, err)
	}
	last := clients[refusers]
	go func() { _, _ = io.WriteString(last, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n") }()
	resp, err := http.ReadResponse(bufio.NewReader(last), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("answer %d", resp.StatusCode)
	}
}
