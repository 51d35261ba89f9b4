package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

const testGreeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}`

// guard is a deadlock guard, not a timing assertion.
const guard = 20 * time.Second

// fake is the server end of a scripted QMP conversation.
type fake struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

type command struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func (f *fake) send(s string) {
	f.t.Helper()
	f.conn.SetWriteDeadline(time.Now().Add(guard))
	if _, err := f.conn.Write([]byte(s + "\r\n")); err != nil {
		f.t.Errorf("fake server write: %v", err)
	}
}

func (f *fake) recv() command {
	f.t.Helper()
	f.conn.SetReadDeadline(time.Now().Add(guard))
	line, err := f.r.ReadString('\n')
	if err != nil {
		f.t.Fatalf("fake server read: %v", err)
	}
	var c command
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		f.t.Fatalf("client sent bad JSON %q: %v", line, err)
	}
	return c
}

func (f *fake) reply(c command, ret string) {
	f.t.Helper()
	f.send(`{"return": ` + ret + `, "id": ` + string(c.ID) + `}`)
}

// start connects a Client to a fake server that has answered the
// handshake.
func start(t *testing.T, opts ...Option) (*Client, *fake) {
	t.Helper()
	cc, sc := net.Pipe()
	f := &fake{t: t, conn: sc, r: bufio.NewReader(sc)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.send(testGreeting)
		c := f.recv()
		if c.Execute != "qmp_capabilities" {
			t.Errorf("first command %q, want qmp_capabilities", c.Execute)
		}
		f.reply(c, `{}`)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cl, err := NewClient(ctx, cc, opts...)
	wg.Wait()
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { cl.Close(); sc.Close() })
	return cl, f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeGreeting(t *testing.T) {
	c, _ := start(t)
	g := c.Greeting()
	if g.Version.String() != "7.2.22" || g.Version.Package != "Debian 1:7.2+dfsg-7" {
		t.Errorf("greeting version %v %q", g.Version, g.Version.Package)
	}
	if !g.Version.AtLeast(7, 1) || g.Version.AtLeast(7, 3) || !g.Version.AtLeast(6, 9) {
		t.Errorf("AtLeast wrong for %v", g.Version)
	}
	if len(g.Capabilities) != 1 || g.Capabilities[0] != "oob" {
		t.Errorf("capabilities %v", g.Capabilities)
	}
}

func TestEventsInterleavedWithReplies(t *testing.T) {
	sub := NewSubscription(8)
	c, f := start(t, WithSubscription(sub))

	type res struct {
		name string
		ret  string
		err  error
	}
	out := make(chan res, 2)
	for _, name := range []string{"query-status", "query-version"} {
		go func() {
			ret, err := c.Execute(ctxT(t), name, nil)
			out <- res{name, string(ret), err}
		}()
	}
	a, b := f.recv(), f.recv()
	// Answer in reverse order, with events before, between and after.
	f.send(`{"event": "STOP", "timestamp": {"seconds": 1700000000, "microseconds": 5}}`)
	f.reply(b, `"`+b.Execute+`"`)
	f.send(`{"event": "RESUME", "timestamp": {"seconds": 1700000001, "microseconds": 0}}`)
	f.reply(a, `"`+a.Execute+`"`)
	f.send(`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1700000002, "microseconds": 0}}`)

	for range 2 {
		r := <-out
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
		if r.ret != `"`+r.name+`"` {
			t.Errorf("%s got reply %s: ids mismatched", r.name, r.ret)
		}
	}
	want := []string{"STOP", "RESUME", "SHUTDOWN"}
	for i, w := range want {
		e := <-sub.Events()
		if e.Name != w {
			t.Fatalf("event %d = %s, want %s", i, e.Name, w)
		}
		if i == 0 && !e.Time.Equal(time.Unix(1700000000, 5000)) {
			t.Errorf("STOP time %v", e.Time)
		}
		if w == "SHUTDOWN" && !strings.Contains(string(e.Data), "guest-shutdown") {
			t.Errorf("SHUTDOWN data %s", e.Data)
		}
		if w == "STOP" && e.Data != nil {
			t.Errorf("STOP without data has Data %q", e.Data)
		}
	}
}

func TestErrorReply(t *testing.T) {
	c, f := start(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Execute(ctxT(t), "screendump", map[string]string{"filename": "/x"})
		done <- err
	}()
	cmd := f.recv()
	if string(cmd.Arguments) != `{"filename":"/x"}` {
		t.Errorf("arguments sent: %s", cmd.Arguments)
	}
	f.send(`{"error": {"class": "GenericError", "desc": "There is no console to take a screendump from"}, "id": ` + string(cmd.ID) + `}`)
	err := <-done
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) is not a *qmp.Error", err, err)
	}
	if qe.Class != "GenericError" || qe.Command != "screendump" || !strings.Contains(qe.Desc, "no console") {
		t.Errorf("error fields %+v", qe)
	}
	if errors.Is(err, ErrClosed) {
		t.Error("a command error must not look like a closed connection")
	}
	// The connection still works.
	go func() { c2 := f.recv(); f.reply(c2, `{"status": "running"}`) }()
	var st struct{ Status string }
	if err := c.Run(ctxT(t), "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Errorf("query-status after an error: %v %+v", err, st)
	}
}

func TestReplyWithoutIDGoesToOldest(t *testing.T) {
	c, f := start(t)
	first := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "first", nil); first <- err }()
	f.recv()
	second := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "second", nil); second <- err }()
	b := f.recv()
	f.send(`{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword"}}`)
	var qe *Error
	if err := <-first; !errors.As(err, &qe) || qe.Command != "first" {
		t.Fatalf("first: %v", err)
	}
	f.reply(b, `{}`)
	if err := <-second; err != nil {
		t.Fatalf("second: %v", err)
	}
	// A reply with a foreign id is ignored; the next call still matches.
	go func() {
		c3 := f.recv()
		f.send(`{"return": "foreign", "id": "someone-else"}`)
		f.send(`{"return": "stale", "id": 999999}`)
		f.send(`{"what": "is this"}`)
		f.reply(c3, `"mine"`)
	}()
	ret, err := c.Execute(ctxT(t), "third", nil)
	if err != nil || string(ret) != `"mine"` {
		t.Fatalf("third: %s %v", ret, err)
	}
}

func TestReplyWithoutIDAfterAbandonedCall(t *testing.T) {
	c, f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan command, 1)
	go func() { got <- f.recv() }()
	abandoned := make(chan error, 1)
	go func() { _, err := c.Execute(ctx, "abandoned", nil); abandoned <- err }()
	<-got
	cancel()
	<-abandoned
	done := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "waiting", nil); done <- err }()
	w := f.recv()
	// The server could not parse the abandoned command: its id-less error
	// must not be taken for the reply to the next one.
	f.send(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`)
	f.reply(w, `"ok"`)
	if err := <-done; err != nil {
		t.Fatalf("waiting call got %v", err)
	}
}

func TestGarbageClosesConnection(t *testing.T) {
	sub := NewSubscription(4)
	c, f := start(t, WithSubscription(sub))
	done := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "query-status", nil); done <- err }()
	f.recv()
	f.send(`{"event": "STOP"}`)
	f.send(`this is not json`)
	err := <-done
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("error %v, want ErrClosed and ErrProtocol", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrProtocol) {
		t.Errorf("Err() = %v", c.Err())
	}
	// Events read before the garbage are still delivered, then the channel closes.
	if e, ok := <-sub.Events(); !ok || e.Name != "STOP" {
		t.Errorf("got %v %v, want STOP", e, ok)
	}
	if _, ok := <-sub.Events(); ok {
		t.Error("subscription not closed after the connection ended")
	}
	if _, err := c.Execute(ctxT(t), "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after close: %v", err)
	}
}

func TestNonObjectJSONIsProtocolError(t *testing.T) {
	c, f := start(t)
	f.send(`[1, 2, 3]`)
	<-c.Done()
	if !errors.Is(c.Err(), ErrProtocol) {
		t.Errorf("Err() = %v", c.Err())
	}
}

func TestDisconnectMidCall(t *testing.T) {
	c, f := start(t)
	done := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "quit", nil); done <- err }()
	f.recv()
	f.send(`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}, "timestamp": {"seconds": 1, "microseconds": 0}}`)
	f.conn.Close()
	err := <-done
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("error %v, want ErrClosed", err)
	}
	select {
	case <-c.Done():
	case <-time.After(guard):
		t.Fatal("Done not closed")
	}
}

func TestContextDeadlineAndLateReply(t *testing.T) {
	c, f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := make(chan command, 1)
	go func() { got <- f.recv() }()
	_, err := c.Execute(ctx, "slow", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
	slow := <-got
	go func() {
		f.reply(slow, `"late"`)
		n := f.recv()
		f.reply(n, `"next"`)
	}()
	ret, err := c.Execute(ctxT(t), "next", nil)
	if err != nil || string(ret) != `"next"` {
		t.Fatalf("next: %s %v", ret, err)
	}
}

func TestCancelledWriteClosesClient(t *testing.T) {
	c, f := start(t)
	// The connection is a synchronous pipe: the command's write blocks
	// until the server end reads all of it. Reading its first byte shows
	// the write has begun; it stays blocked on the rest while ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		one := make([]byte, 1)
		_, _ = f.conn.Read(one)
		cancel()
	}()
	_, err := c.Execute(ctx, "blocked", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want Canceled", err)
	}
	<-c.Done()
}

func TestSlowSubscriberLosesEventsNotReplies(t *testing.T) {
	slow := NewSubscription(2)
	c, f := start(t, WithSubscription(slow))
	fast := c.Subscribe(16)
	go func() {
		cmd := f.recv()
		for range 5 {
			f.send(`{"event": "RESET", "data": {"guest": false}}`)
		}
		f.reply(cmd, `{}`)
	}()
	if _, err := c.Execute(ctxT(t), "system_reset", nil); err != nil {
		t.Fatal(err)
	}
	if slow.Dropped() != 3 {
		t.Errorf("slow dropped %d, want 3", slow.Dropped())
	}
	if fast.Dropped() != 0 || len(fast.Events()) != 5 {
		t.Errorf("fast dropped %d, has %d", fast.Dropped(), len(fast.Events()))
	}
	fast.Close()
	fast.Close()
	if _, ok := <-fast.Events(); !ok {
		t.Error("buffered events should still be readable after Close")
	}
}

func TestClosedSubscriptionNotDelivered(t *testing.T) {
	s := NewSubscription(1)
	s.Close()
	c, f := start(t, WithSubscription(s))
	go func() { cmd := f.recv(); f.send(`{"event": "STOP"}`); f.reply(cmd, `{}`) }()
	if _, err := c.Execute(ctxT(t), "stop", nil); err != nil {
		t.Fatal(err)
	}
}

func TestBadGreeting(t *testing.T) {
	tests := []struct {
		name, first string
		want        error
	}{
		{"not a greeting", `{"return": {}}`, ErrProtocol},
		{"garbage", `SSH-2.0-OpenSSH`, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer sc.Close()
			go sc.Write([]byte(tt.first + "\n"))
			_, err := NewClient(ctxT(t), cc)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("silent server", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer sc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := NewClient(ctx, cc); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
	})
	t.Run("refused capabilities", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer sc.Close()
		f := &fake{t: t, conn: sc, r: bufio.NewReader(sc)}
		go func() {
			f.send(testGreeting)
			cmd := f.recv()
			f.send(`{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": ` + string(cmd.ID) + `}`)
		}()
		_, err := NewClient(ctxT(t), cc)
		var qe *Error
		if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
			t.Fatalf("error %v", err)
		}
	})
}

func TestCloseFailsCallsInFlight(t *testing.T) {
	c, f := start(t)
	done := make(chan error, 1)
	go func() { _, err := c.Execute(ctxT(t), "query-status", nil); done <- err }()
	f.recv()
	c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("error %v", err)
	}
	if c.Err() == nil {
		t.Error("Err() nil after Close")
	}
	if s := c.Subscribe(1); s != nil {
		if _, ok := <-s.Events(); ok {
			t.Error("subscription on a closed client is open")
		}
	}
}

func TestBadArguments(t *testing.T) {
	c, _ := start(t)
	_, err := c.Execute(ctxT(t), "x", map[string]any{"f": func() {}})
	if err == nil || errors.Is(err, ErrClosed) {
		t.Fatalf("error %v, want an encoding error", err)
	}
}
