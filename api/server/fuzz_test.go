package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/peercred"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/supervisor"
)

// Callers of the handler fuzz target.
const (
	callerNone     = iota // no credentials (they could not be read)
	callerRoot            // uid 0
	callerOwner           // owns VM "mine" only
	callerStranger        // owns nothing, in no VM's group
	callers
)

const (
	ownerUID    = 4242
	strangerUID = 4343
	teamGID     = 4444 // group of VM "team"; nobody here is in it
)

// streamEnder records an answer and ends the request when the handler
// flushes: the streams (events, log follow) flush once their
// subscription is in place, and would run until their client goes away.
type streamEnder struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (s streamEnder) Flush() {
	s.ResponseRecorder.Flush()
	s.cancel()
}

// FuzzHandler sends arbitrary methods, paths and bodies to the handler as
// each kind of caller: no credentials, root, a VM's owner and a stranger.
// No input may panic; every error is a JSON error body; a caller without
// rights to a VM never succeeds on it nor sees it, and never changes what
// any VM is asked to be.
func FuzzHandler(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/v1/vms", ""}, {"GET", "/v1/vms/vm", ""}, {"POST", "/v1/vms/vm/stop", `{"force":true}`},
		{"POST", "/v1/vms/vm/stop?timeout=1e400", ""}, {"GET", "/v1/vms/%2e%2e/log?lines=3", ""},
		{"POST", "/v1/reload", "{}"}, {"DELETE", "/v1/vms/vm", ""}, {"GET", "//v1//vms", ""},
		{"POST", "/v1/vms/vm/start", `{"x":`}, {"GET", "/v1/vms/vm/info/", ""},
		{"POST", "/v1/vms/mine/start", ""}, {"GET", "/v1/vms/mine/log?follow=true&lines=1", ""},
		{"GET", "/v1/events?after=0", ""}, {"GET", "/v1/events?vm=team", ""}, {"POST", "/v1/vms/team/failreset", ""},
		{"POST", "/v1/vms/mine/screenshot", ""}, {"GET", "/v1/vms/team", ""},
	} {
		for who := 0; who < callers; who++ {
			f.Add(uint8(who), s[0], s[1], s[2])
		}
	}
	root := f.TempDir()
	writeConfig(f, root, "vm", sleeper("vm", ""))
	writeConfig(f, root, "mine", sleeper("mine", "owner = 4242;"))
	writeConfig(f, root, "team", sleeper("team", "group = 4444;"))
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	// No drivers: a start fails at launch, nothing is run.
	state := f.TempDir()
	sup := supervisor.New(ctx, supervisor.Options{RunDir: filepath.Join(state, "run"), LogDir: filepath.Join(state, "log"), StateDir: filepath.Join(state, "state")})
	for _, d := range []string{"run", "log", "state"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	sup.Load(config.LoadRoot(root, config.LoadOptions{}), supervisor.LoadOptions{})
	admin := uint32(0)
	h := server.New(sup, server.Options{AdminUID: &admin, Logf: func(string, ...any) {}}).Handler()
	creds := [callers]*peercred.Cred{
		callerRoot:     {UID: 0, GID: 0, Groups: []uint32{0}},
		callerOwner:    {UID: ownerUID, GID: ownerUID, Groups: []uint32{ownerUID}},
		callerStranger: {UID: strangerUID, GID: strangerUID, Groups: []uint32{strangerUID}},
	}
	// visible is what each caller may see and act on.
	visible := [callers]map[string]bool{
		callerNone:     {},
		callerRoot:     {"vm": true, "mine": true, "team": true},
		callerOwner:    {"mine": true},
		callerStranger: {},
	}
	desired := func() map[string]string {
		out := map[string]string{}
		for _, st := range sup.List() {
			out[st.Name] = string(st.Desired)
		}
		return out
	}
	// settled waits until no VM is on its way anywhere: a start an
	// earlier input asked for fails at launch on its own time, and its
	// change of desired state must not be taken for this input's doing.
	settled := func(t *testing.T) {
		sub := sup.Bus().Subscribe(0)
		defer func() { sub.Close() }()
		timer := time.NewTimer(guard)
		defer timer.Stop()
		for {
			busy := false
			for _, st := range sup.List() {
				if !st.State.Steady() || st.Hook != "" || len(st.WaitingFor) > 0 || st.Recovering {
					busy = true
				}
			}
			if !busy {
				return
			}
			select {
			case _, ok := <-sub.C():
				if !ok {
					sub = sup.Bus().Subscribe(0)
				}
			case <-timer.C:
				t.Fatalf("VMs did not settle: %+v", sup.List())
			}
		}
	}
	f.Fuzz(func(t *testing.T, who uint8, method, target, body string) {
		who %= callers
		settled(t)
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(req.URL.Path, "/") {
			return
		}
		rctx, rcancel := context.WithTimeout(context.Background(), guard)
		defer rcancel()
		if c := creds[who]; c != nil {
			rctx = server.WithPeer(rctx, *c)
		}
		req = req.WithContext(rctx)
		before := desired()
		rec := streamEnder{httptest.NewRecorder(), rcancel}
		h.ServeHTTP(rec, req)
		after := desired()
		for name, d := range before {
			if !visible[who][name] && after[name] != d {
				t.Fatalf("caller %d: %s %s changed %s from desired %s to %s", who, method, target, name, d, after[name])
			}
		}
		if rec.Code >= 300 {
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Code == "" || eb.Error == "" {
				t.Fatalf("caller %d: %s %s: %d with body %q", who, method, target, rec.Code, rec.Body.Bytes())
			}
			return
		}
		ct := rec.Header().Get("Content-Type")
		switch {
		case ct == "application/json":
			// A list shows only the VMs the caller may see; a status,
			// only such a VM.
			var list []api.Status
			if json.Unmarshal(rec.Body.Bytes(), &list) == nil {
				for _, st := range list {
					if !visible[who][st.Name] {
						t.Fatalf("caller %d: %s %s lists %s", who, method, target, st.Name)
					}
				}
				return
			}
			var st api.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err == nil && st.Name != "" && !visible[who][st.Name] {
				t.Fatalf("caller %d: %s %s shows %s", who, method, target, st.Name)
			}
		case ct == "application/x-ndjson":
			sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
			for sc.Scan() {
				var e api.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("caller %d: bad event line %q", who, sc.Bytes())
				}
				if e.VM != "" && !visible[who][e.VM] {
					t.Fatalf("caller %d: sees an event of %s", who, e.VM)
				}
			}
		default:
			// A log or an image: only of a VM the caller may see.
			seg := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
			if len(seg) < 3 || !visible[who][seg[2]] {
				t.Fatalf("caller %d: %s %s: %d %s", who, method, target, rec.Code, ct)
			}
		}
	})
}

// FuzzWire writes arbitrary bytes to the control socket as root. Whatever
// the server answers first parses as an HTTP response, and an error is a
// JSON error body, also for what net/http refuses by itself.
func FuzzWire(f *testing.F) {
	for _, s := range []string{
		"GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/vms/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/vms HTTP/1.1\r\n\r\n",
		"POST /v1/vms/vm/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{}",
		"POST /v1/vms/vm/stop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"POST /v1/vms/vm/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET /v1/vms HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
		"GET /v1/vms HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /%zz HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// The server proper, with its caps and timeouts, on a socket.
	root := f.TempDir()
	writeConfig(f, root, "vm", sleeper("vm", ""))
	ctx, cancel := context.WithCancel(context.Background())
	state := f.TempDir()
	sup := supervisor.New(ctx, supervisor.Options{RunDir: filepath.Join(state, "run"), LogDir: filepath.Join(state, "log"), StateDir: filepath.Join(state, "state")})
	sup.Load(config.LoadRoot(root, config.LoadOptions{}), supervisor.LoadOptions{})
	dir, err := os.MkdirTemp("", "vmfz")
	if err != nil {
		f.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	l, err := server.Listen(sock)
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan error, 1)
	srv := server.New(sup, server.Options{Logf: func(string, ...any) {}, BodyTimeout: 200 * time.Millisecond})
	go func() { served <- srv.Serve(ctx, l) }()
	f.Cleanup(func() {
		cancel()
		<-served
		sup.Wait()
		os.RemoveAll(dir)
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(guard))
		// Write and half-close in the background: the server may answer
		// and close before it has read everything.
		go func() {
			_, _ = c.Write(in)
			_ = c.(*net.UnixConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if len(out) == 0 {
			return // nothing answered (a request cut short, or nothing sent)
		}
		method := "GET"
		if m, _, ok := bytes.Cut(in, []byte(" ")); ok {
			method = string(m)
		}
		resp, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &http.Request{Method: method})
		if perr != nil {
			t.Fatalf("input %q: answer %q does not parse: %v (read: %v)", in, out, perr, err)
		}
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 400 || method == "HEAD" {
			return
		}
		var eb api.ErrorBody
		if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(data, &eb) != nil || eb.Code == "" || eb.Error == "" {
			t.Fatalf("input %q: %d answered with %q", in, resp.StatusCode, out)
		}
	})
}
