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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/supervisor"
)

// raw sends one request as any HTTP client would (curl --unix-socket) and
// returns the status and body.
func raw(t *testing.T, socket, method, path, contentType string, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}, Timeout: guard}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://localhost"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func TestEndpoints(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"alpha": sleeper("alpha", `description = "first";`),
		"beta":  sleeper("beta", `depends = [ "alpha" ];`),
	}, server.Options{})
	ctx := context.Background()
	c := d.client

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" {
		t.Fatalf("list = %+v", list)
	}
	if list[0].State != api.StateStopped || list[0].Hypervisor != "exec" || list[0].Description != "first" {
		t.Fatalf("alpha = %+v", list[0])
	}
	if len(list[1].Depends) != 1 || list[1].Depends[0] != "alpha" {
		t.Fatalf("beta depends = %v", list[1].Depends)
	}

	// Start beta: alpha starts first.
	st, err := c.Start(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "beta" || st.Desired != api.StateRunning {
		t.Fatalf("start answer = %+v", st)
	}
	beta := d.waitState("beta", api.StateRunning)
	if beta.PID == 0 {
		t.Fatalf("running beta has no pid: %+v", beta)
	}
	if a, _ := c.Get(ctx, "alpha"); a.State != api.StateRunning {
		t.Fatalf("alpha = %s, want running", a.State)
	}

	// Pause and unpause (the exec driver stops and continues the process).
	if st, err = c.Do(ctx, "beta", api.ActionPause, nil); err != nil || st.State != api.StatePaused {
		t.Fatalf("pause: %+v %v", st, err)
	}
	if st, err = c.Do(ctx, "beta", api.ActionUnpause, nil); err != nil || st.State != api.StateRunning {
		t.Fatalf("unpause: %+v %v", st, err)
	}

	// Restart relaunches: a new pid.
	if _, err = c.Do(ctx, "beta", api.ActionRestart, nil); err != nil {
		t.Fatal(err)
	}
	d.waitState("beta", api.StateRunning)
	if b, _ := c.Get(ctx, "beta"); b.PID == beta.PID || b.PID == 0 {
		t.Fatalf("pid after restart %d, before %d", b.PID, beta.PID)
	}

	// The exec driver has no reset, NMI, screenshot or info: 501.
	for _, a := range []api.Action{api.ActionReset, api.ActionNMI} {
		_, err := c.Do(ctx, "beta", a, nil)
		apiError(t, err, http.StatusNotImplemented, api.CodeNotSupported)
		if !errors.Is(err, api.ErrNotSupported) {
			t.Fatalf("%s: %v does not match ErrNotSupported", a, err)
		}
	}
	_, err = c.Screenshot(ctx, "beta", io.Discard)
	apiError(t, err, http.StatusNotImplemented, api.CodeNotSupported)
	_, err = c.Info(ctx, "beta")
	apiError(t, err, http.StatusNotImplemented, api.CodeNotSupported)

	// The log holds the transitions; lines=2 gives the last two.
	rd, err := c.Log(ctx, "beta", api.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Contains(all, []byte("start_network")) || !bytes.Contains(all, []byte("restart requested")) {
		t.Fatalf("log lacks the transitions:\n%s", all)
	}
	rd, err = c.Log(ctx, "beta", api.LogOptions{Lines: 2})
	if err != nil {
		t.Fatal(err)
	}
	two, _ := io.ReadAll(rd)
	rd.Close()
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if want := strings.Join(lines[len(lines)-2:], "\n") + "\n"; string(two) != want {
		t.Fatalf("lines=2 gave %q, want %q", two, want)
	}

	// Follow: a stop shows up in the followed log.
	fctx, fcancel := context.WithTimeout(ctx, guard)
	defer fcancel()
	rd, err = c.Log(fctx, "beta", api.LogOptions{Follow: true, Lines: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stop(ctx, "beta", api.StopOptions{Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(rd)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "stop requested") {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("followed log ended without the stop: %v", sc.Err())
	}
	fcancel()
	rd.Close()
	d.waitState("beta", api.StateStopped)

	// Force stop.
	if _, err := c.Stop(ctx, "alpha", api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if a := d.waitState("alpha", api.StateStopped); a.PID != 0 {
		t.Fatalf("stopped alpha has pid %d", a.PID)
	}

	// Reload picks up a new VM.
	writeConfig(t, d.root, "gamma", sleeper("gamma", ""))
	if res, err := c.Reload(ctx); err != nil || !res.OK {
		t.Fatal(res, err)
	}
	// Returned once applied: gamma is there now, no waiting.
	if _, err := c.Get(ctx, "gamma"); err != nil {
		t.Fatalf("gamma after reload: %v", err)
	}
	// A broken config is in the summary, with its errors.
	writeConfig(t, d.root, "gamma", "gamma { cpus = many; }\n")
	res, err := c.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Invalid["gamma"]; !strings.Contains(e, "cpus") {
		t.Errorf("reload summary %+v does not give gamma's error", res)
	}
	if st, _ := c.Get(ctx, "gamma"); st.ConfigError == "" {
		t.Errorf("gamma shows no config error right after the reload: %+v", st)
	}
}

func TestStopOptionsInQuery(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{})
	d.run("vm")
	code, _, body := raw(t, d.socket, "POST", "/v1/vms/vm/stop?force=true&timeout=3", "", nil)
	if code != http.StatusOK {
		t.Fatalf("stop with query: %d %s", code, body)
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Name != "vm" {
		t.Fatalf("answer %s: %v", body, err)
	}
	d.waitState("vm", api.StateStopped)
}

// TestErrors sends every kind of bad request and checks the answer, then
// that the daemon and the running VM are unaffected.
func TestErrors(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"vm":  sleeper("vm", ""),
		"off": sleeper("off", ""),
	}, server.Options{})
	running := d.run("vm")
	big := strings.Repeat(" ", api.MaxBodyBytes+1)
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown VM", "GET", "/v1/vms/nope", "", 404, api.CodeNotFound},
		{"unknown VM action", "POST", "/v1/vms/nope/start", "", 404, api.CodeNotFound},
		{"unknown VM log", "GET", "/v1/vms/nope/log", "", 404, api.CodeNotFound},
		{"unknown VM events", "GET", "/v1/events?vm=nope", "", 404, api.CodeNotFound},
		{"start running", "POST", "/v1/vms/vm/start", "", 409, api.CodeNotAllowed},
		{"failreset running", "POST", "/v1/vms/vm/failreset", "", 409, api.CodeNotAllowed},
		{"unpause stopped", "POST", "/v1/vms/off/unpause", "", 409, api.CodeNotAllowed},
		{"stop stopped", "POST", "/v1/vms/off/stop", "", 409, api.CodeNotAllowed},
		{"malformed JSON", "POST", "/v1/vms/vm/stop", `{"force": tru`, 400, api.CodeBadRequest},
		{"unknown field", "POST", "/v1/vms/vm/stop", `{"forse": true}`, 400, api.CodeBadRequest},
		{"wrong type", "POST", "/v1/vms/vm/stop", `{"timeout": "soon"}`, 400, api.CodeBadRequest},
		{"trailing data", "POST", "/v1/vms/vm/stop", `{} {}`, 400, api.CodeBadRequest},
		{"negative timeout", "POST", "/v1/vms/vm/stop", `{"timeout": -1}`, 400, api.CodeBadRequest},
		{"options for start", "POST", "/v1/vms/off/start", `{"force": true}`, 400, api.CodeBadRequest},
		{"bad query value", "POST", "/v1/vms/vm/stop?force=maybe", "", 400, api.CodeBadRequest},
		{"unknown query", "GET", "/v1/vms?x=1", "", 400, api.CodeBadRequest},
		{"bad after", "GET", "/v1/events?after=-3", "", 400, api.CodeBadRequest},
		{"bad lines", "GET", "/v1/vms/vm/log?lines=many", "", 400, api.CodeBadRequest},
		{"oversized body", "POST", "/v1/vms/vm/stop", big, 413, api.CodeTooLarge},
		{"oversized reload", "POST", "/v1/reload", big, 413, api.CodeTooLarge},
		{"unknown endpoint", "GET", "/v2/vms", "", 404, api.CodeNoEndpoint},
		{"unknown action", "POST", "/v1/vms/vm/explode", "", 404, api.CodeNoEndpoint},
		{"too deep", "GET", "/v1/vms/vm/info/more", "", 404, api.CodeNoEndpoint},
		{"root", "GET", "/", "", 404, api.CodeNoEndpoint},
		{"GET action", "GET", "/v1/vms/vm/stop", "", 405, api.CodeMethodNotAllowed},
		{"DELETE vm", "DELETE", "/v1/vms/vm", "", 405, api.CodeMethodNotAllowed},
		{"POST list", "POST", "/v1/vms", "", 405, api.CodeMethodNotAllowed},
		{"GET reload", "GET", "/v1/reload", "", 405, api.CodeMethodNotAllowed},
		{"PUT events", "PUT", "/v1/events", "", 405, api.CodeMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			code, hdr, data := raw(t, d.socket, tc.method, tc.path, "application/json", body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, data)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			var eb api.ErrorBody
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil {
				t.Fatalf("body %q: %v", data, err)
			}
			if eb.Code != tc.code || eb.Error == "" {
				t.Fatalf("body %+v, want code %s", eb, tc.code)
			}
			if tc.status == 405 && hdr.Get("Allow") == "" {
				t.Fatalf("405 without Allow")
			}
			if tc.code == api.CodeNotAllowed {
				if eb.State == "" || !strings.Contains(eb.Error, string(eb.State)) {
					t.Fatalf("409 without the state: %+v", eb)
				}
			}
		})
	}
	// Nothing changed.
	st, err := d.client.Get(context.Background(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != api.StateRunning || st.PID != running.PID {
		t.Fatalf("after the bad requests vm is %s pid %d, was running pid %d", st.State, st.PID, running.PID)
	}
	if off, _ := d.client.Get(context.Background(), "off"); off.State != api.StateStopped {
		t.Fatalf("off is %s", off.State)
	}
}

func TestInvalidConfig409(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{})
	// Break the config of a VM the daemon has never seen valid.
	writeConfig(t, d.root, "broken", "broken { hypervisor = exec; cpus = lots; }\n")
	if _, err := d.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := d.client.Get(context.Background(), "broken")
	if err != nil {
		t.Fatal(err)
	}
	if st.ConfigError == "" {
		t.Fatalf("broken shows no config error: %+v", st)
	}
	_, err = d.client.Start(context.Background(), "broken")
	apiError(t, err, http.StatusConflict, api.CodeInvalidConfig)
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("%v does not match ErrConflict", err)
	}
}

func TestReloadWithoutReloader(t *testing.T) {
	d := startDaemon(t, nil, server.Options{Reload: func(context.Context) (supervisor.ReloadSummary, error) {
		return supervisor.ReloadSummary{}, errors.New("disk on fire")
	}})
	_, err := d.client.Reload(context.Background())
	apiError(t, err, http.StatusInternalServerError, api.CodeReloadFailed)
}

func TestEventsResumeAndLoss(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c := d.client

	s, err := c.Events(ctx, api.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.run("vm")
	var seen []api.Event
	for {
		e, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, e)
		if e.Kind == api.KindTransition && e.VM == "vm" && e.To == api.StateRunning {
			break
		}
	}
	s.Close()
	for i := 1; i < len(seen); i++ {
		if seen[i].Seq != seen[i-1].Seq+1 {
			t.Fatalf("sequence gap: %d then %d", seen[i-1].Seq, seen[i].Seq)
		}
	}
	if seen[0].From != api.StateStopped || seen[0].To != api.StateStartNetwork {
		t.Fatalf("first event %+v", seen[0])
	}

	// Resume after the first: the rest is replayed, in order.
	s, err = c.Events(ctx, api.EventOptions{After: seen[0].Seq})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range seen[1:] {
		e, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != want.Seq || e.To != want.To {
			t.Fatalf("replayed %+v, want %+v", e, want)
		}
	}
	s.Close()

	// Replay from 0: every event kept, the first one included.
	s, err = c.Events(ctx, api.EventOptions{Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.Next(); err != nil || e.Seq != 1 {
		t.Fatalf("replay from 0 began with %+v (%v), want #1", e, err)
	}
	s.Close()

	// Push the early events out of the history: resuming after them is
	// told how many were lost.
	bus := d.sup.Bus()
	for i := 0; i < 5000; i++ {
		bus.Publish(supervisor.Event{Kind: supervisor.KindConfig, VM: "vm", Reason: "filler"})
	}
	s, err = c.Events(ctx, api.EventOptions{After: seen[0].Seq})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != api.KindLost || e.Lost == 0 {
		t.Fatalf("resume after a forgotten event gave %+v, want a lost notice", e)
	}
	next, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq != e.Seq+1 || e.Seq-seen[0].Seq != e.Lost {
		t.Fatalf("lost notice %+v, then %+v", e, next)
	}
	s.Close()
}

// TestEventsSlowReader: a reader that does not read is cut off with a
// lost notice, never blocking the daemon; it can resume where it was.
func TestEventsSlowReader(t *testing.T) {
	// The reader stalls while the events are published and the VM starts,
	// which on a loaded machine can outlast the default write timeout; that
	// would cut the stream mid-line instead of with the lost notice.
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{WriteTimeout: guard})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := d.client.Events(ctx, api.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bus := d.sup.Bus()
	reason := strings.Repeat("x", 400)
	// Publishing never blocks, however much the reader lags.
	for i := 0; i < 20000; i++ {
		bus.Publish(supervisor.Event{Kind: supervisor.KindConfig, VM: "vm", Reason: reason})
	}
	// Meanwhile the daemon answers others and acts.
	d.run("vm")
	var last api.Event
	n := 0
	for {
		e, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = e
		n++
	}
	if last.Kind != api.KindLost {
		t.Fatalf("after %d events the stream ended with %+v, want a lost notice", n, last)
	}
	// Resume after what was seen.
	s2, err := d.client.Events(ctx, api.EventOptions{After: last.Seq})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e, err := s2.Next()
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != last.Seq+1 && e.Kind != api.KindLost {
		t.Fatalf("resumed with %+v after %d", e, last.Seq)
	}
}

// TestConcurrentClients: 50 clients ask for status and act while VMs
// cycle; every answer is a success or a 409 (the state moved under the
// request), and everything ends.
func TestConcurrentClients(t *testing.T) {
	vms := map[string]string{}
	names := []string{"c0", "c1", "c2", "c3"}
	for _, n := range names {
		vms[n] = sleeper(n, "")
	}
	d := startDaemon(t, vms, server.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	const clients, rounds = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients*rounds)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := api.NewClient(d.socket)
			defer c.Close()
			for r := 0; r < rounds; r++ {
				name := names[(i+r)%len(names)]
				var err error
				switch (i + r) % 5 {
				case 0:
					_, err = c.List(ctx)
				case 1:
					_, err = c.Get(ctx, name)
				case 2:
					_, err = c.Start(ctx, name)
				case 3:
					_, err = c.Stop(ctx, name, api.StopOptions{Force: r%2 == 0})
				case 4:
					_, err = c.Do(ctx, name, api.ActionRestart, nil)
				}
				if err != nil && !errors.Is(err, api.ErrConflict) {
					errs <- fmt.Errorf("client %d round %d on %s: %w", i, r, name, err)
				}
			}
		}(i)
	}
	// One more client follows the events all along.
	evDone := make(chan int)
	ectx, ecancel := context.WithCancel(ctx)
	go func() {
		n := 0
		defer func() { evDone <- n }()
		s, err := d.client.Events(ectx, api.EventOptions{})
		if err != nil {
			return
		}
		defer s.Close()
		for {
			if _, err := s.Next(); err != nil {
				return
			}
			n++
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Everything settles; stop all and see it through.
	for _, n := range names {
		if _, err := d.client.Stop(ctx, n, api.StopOptions{Force: true}); err != nil && !errors.Is(err, api.ErrConflict) {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		d.waitState(n, api.StateStopped, api.StateFailed)
	}
	ecancel()
	if n := <-evDone; n == 0 {
		t.Fatalf("the event follower saw nothing")
	}
}

// TestStuckClients: a client that sends half a request, and one that never
// reads its event stream, do not keep the daemon from answering others.
func TestStuckClients(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{ReadHeaderTimeout: 500 * time.Millisecond})
	half, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := io.WriteString(half, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	stream, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := io.WriteString(stream, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	d.run("vm")
	if _, err := d.client.Stop(context.Background(), "vm", api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitState("vm", api.StateStopped)
	// The half request is dropped once its headers are overdue.
	_ = half.SetReadDeadline(time.Now().Add(guard))
	data, _ := io.ReadAll(half)
	if bytes.Contains(data, []byte("200 OK")) {
		t.Fatalf("the incomplete request was answered: %q", data)
	}
}

// TestServeEndsStreams: when the daemon exits, event and log streams end
// and Serve returns.
func TestServeEndsStreams(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, server.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := d.client.Events(ctx, api.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lg, err := d.client.Log(ctx, "vm", api.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	d.srv.Close()
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("events after close: %v", err)
	}
	if _, err := io.ReadAll(lg); err != nil {
		t.Fatalf("log after close: %v", err)
	}
	select {
	case err := <-d.served:
		if err != nil {
			t.Fatal(err)
		}
		d.served <- nil // for the cleanup
	case <-ctx.Done():
		t.Fatal("Serve did not return")
	}
	if _, err := d.client.List(ctx); !errors.Is(err, api.ErrUnreachable) {
		t.Fatalf("list after shutdown: %v, want unreachable", err)
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "vmlis")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := dir + "/sub/s.sock"

	l, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != server.SocketMode {
		t.Fatalf("mode %v, want %v", fi.Mode().Perm(), server.SocketMode)
	}
	// Taking connections but answering nothing: refused once the wait
	// is over, and the socket stays.
	defer server.SetProbeWait(300 * time.Millisecond)()
	if _, err := server.Listen(path); !errors.Is(err, server.ErrInUse) || !strings.Contains(err.Error(), "nothing answers") {
		t.Fatalf("Listen over a silent socket: %v, want ErrInUse saying nothing answers", err)
	}
	// Served: refused at once, and the live socket stays.
	hs := &http.Server{Handler: http.NotFoundHandler()}
	go hs.Serve(l)
	if _, err := server.Listen(path); !errors.Is(err, server.ErrInUse) || !strings.Contains(err.Error(), "another vmstated answers") {
		t.Fatalf("second Listen: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("live socket removed: %v", err)
	}
	hs.Close()
	// A socket that takes connections for a moment and then goes (as one
	// seen right after its daemon was killed): Listen waits it out.
	silent, err := net.Listen("unix", path+".2")
	if err != nil {
		t.Fatal(err)
	}
	silent.(*net.UnixListener).SetUnlinkOnClose(false)
	undo := server.SetProbeWait(time.Minute)
	got := make(chan error, 1)
	go func() {
		l, err := server.Listen(path + ".2")
		if err == nil {
			l.Close()
		}
		got <- err
	}()
	probe, err := silent.Accept() // the probe came, and gets no answer
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	silent.Close()
	if err := <-got; err != nil {
		t.Fatalf("Listen over a socket that went away while probed: %v", err)
	}
	undo()
	l, err = server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	// Stale: a socket file nobody listens on is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("want a stale socket file: %v", err)
	}
	l, err = server.Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	// Not a socket: never removed.
	file := dir + "/plain"
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a plain file: %v", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep" {
		t.Fatalf("plain file changed")
	}
}
