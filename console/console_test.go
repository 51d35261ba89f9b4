package console

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRingLastLines(t *testing.T) {
	r := newRing(16)
	r.Write([]byte("a\nbb\nccc\n"))
	for n, want := range map[int]string{0: "", 1: "ccc\n", 2: "bb\nccc\n", 3: "a\nbb\nccc\n", 9: "a\nbb\nccc\n", -1: "a\nbb\nccc\n"} {
		if got := string(r.lastLines(n)); got != want {
			t.Errorf("lastLines(%d) = %q, want %q", n, got, want)
		}
	}
	r.Write([]byte("prompt# "))
	if got := string(r.lastLines(1)); got != "prompt# " {
		t.Errorf("the line being written: %q", got)
	}
	// Wrapped: the oldest line, which may be cut, is left out.
	r.Write([]byte("xyz\n"))
	if got := string(r.lastLines(-1)); got != "prompt# xyz\n" {
		t.Errorf("after wrapping: %q", got)
	}
	r.Write([]byte(strings.Repeat("z", 40)))
	if got := r.bytes(); len(got) != 16 {
		t.Errorf("holds %d bytes, want 16", len(got))
	}
}

// guest is the far side of a console: what the relay connects to.
type guest struct {
	conns chan net.Conn
}

func newGuest() *guest { return &guest{conns: make(chan net.Conn, 4)} }

func (g *guest) dial(ctx context.Context) (io.ReadWriteCloser, error) {
	a, b := net.Pipe()
	g.conns <- b
	return a, nil
}

func (g *guest) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-g.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the relay never connected")
		return nil
	}
}

// client is one attached session served over a pipe.
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func attach(t *testing.T, r *Relay, mode Mode, lines int) (*client, error) {
	t.Helper()
	s, err := r.Attach(mode, lines)
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	go func() {
		s.Serve(a, bufio.NewReader(a))
		a.Close()
	}()
	t.Cleanup(func() { b.Close() })
	return &client{c: b, br: bufio.NewReader(b)}, nil
}

// until reads frames until one of kind contains s, returning what the
// output frames held.
func (c *client) until(t *testing.T, kind byte, s string) string {
	t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out strings.Builder
	for {
		k, p, err := ReadFrame(c.br)
		if err != nil {
			t.Fatalf("waiting for %q (kind %c): %v; output so far %q", s, kind, err, out.String())
		}
		if k == KindOutput {
			out.Write(p)
		}
		if k == kind && strings.Contains(string(p), s) || kind == KindOutput && strings.Contains(out.String(), s) {
			return out.String()
		}
	}
}

func TestRelay(t *testing.T) {
	g := newGuest()
	r := New()
	r.Connect(g.dial)
	gc := g.next(t)
	gr := bufio.NewReader(gc)
	// A watcher first, to learn when the relay has the output.
	first, err := attach(t, r, ReadOnly, 0)
	if err != nil {
		t.Fatal(err)
	}
	gc.Write([]byte("boot line 1\r\nboot line 2\r\n"))
	first.until(t, KindOutput, "boot line 2")

	// Replay: the last line only.
	w, err := attach(t, r, ReadWrite, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.until(t, KindOutput, "boot line 2"); strings.Contains(got, "line 1") {
		t.Errorf("replay of one line gave %q", got)
	}
	// Typing reaches the guest.
	WriteFrame(w.c, KindInput, []byte("echo hi\n"))
	gc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := gr.ReadString('\n'); err != nil || line != "echo hi\n" {
		t.Fatalf("the guest read %q, %v", line, err)
	}

	// A second writer is refused; a watcher is not; -f takes over.
	if _, err := r.Attach(ReadWrite, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("second writer: %v, want ErrBusy", err)
	}
	ro, err := attach(t, r, ReadOnly, -1)
	if err != nil {
		t.Fatal(err)
	}
	ro.until(t, KindOutput, "boot line 1")
	WriteFrame(ro.c, KindInput, []byte("ignored\n"))
	f, err := attach(t, r, Force, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.until(t, KindEnd, EndTakenOver)
	WriteFrame(f.c, KindInput, []byte("from f\n"))
	if line, err := gr.ReadString('\n'); err != nil || line != "from f\n" {
		t.Fatalf("the guest read %q, %v (the watcher's input must go nowhere)", line, err)
	}

	// The VM restarts: its console closes, a new one connects, sessions
	// are told and see the new output.
	gc.Close()
	r.Connect(g.dial)
	gc = g.next(t)
	f.until(t, KindNotice, "console is back")
	gc.Write([]byte("second boot\r\n"))
	f.until(t, KindOutput, "second boot")
	ro.until(t, KindOutput, "second boot")

	// The VM stops: every session ends, saying so.
	r.End(End{Code: EndStopped, Message: "the VM stopped"})
	for _, c := range []*client{f, ro} {
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			k, p, err := ReadFrame(c.br)
			if err != nil {
				t.Fatalf("no end frame: %v", err)
			}
			if k == KindEnd {
				if e := ParseEnd(p); e.Code != EndStopped || e.Message != "the VM stopped" {
					t.Errorf("end %+v", e)
				}
				break
			}
		}
	}
	if _, err := r.Attach(ReadWrite, 0); err != nil {
		t.Errorf("attach after the writer ended: %v", err)
	}
}

// A console serves at most MaxSessions; -f still gets in, in place of
// the writer.
func TestRelayMaxSessions(t *testing.T) {
	r := New()
	if _, err := r.Attach(ReadWrite, 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < MaxSessions; i++ {
		if _, err := r.Attach(ReadOnly, 0); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
	if _, err := r.Attach(ReadOnly, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("session %d: %v, want ErrBusy", MaxSessions+1, err)
	}
	if _, err := r.Attach(Force, 0); err != nil {
		t.Fatalf("-f with the console full: %v", err)
	}
}

// A session that does not read is ended, and the guest's output goes on
// for the others; output arriving a few bytes at a time is no burden.
func TestRelaySlowSession(t *testing.T) {
	g := newGuest()
	r := New()
	r.Connect(g.dial)
	gc := g.next(t)
	slow, err := r.Attach(ReadOnly, 0) // never served: reads nothing
	if err != nil {
		t.Fatal(err)
	}
	fast, err := attach(t, r, ReadOnly, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Byte by byte, as a serial port delivers: many small reads.
		for i := 0; i < 20000; i++ {
			gc.Write([]byte("x"))
		}
		line := strings.Repeat("y", 1000) + "\n"
		for i := 0; i < MaxPending/len(line)+10; i++ {
			gc.Write([]byte(line))
		}
		gc.Write([]byte("last\n"))
	}()
	fast.until(t, KindOutput, "last")
	select {
	case <-slow.ended:
		if slow.end.Code != EndTooSlow {
			t.Errorf("slow session ended with %+v", slow.end)
		}
		// What it could not keep up with is not held for it any more.
		if f := slow.take(); len(f) != 0 {
			t.Errorf("the ended slow session still holds %d frames", len(f))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow session was not ended")
	}
}

// sizedConn is a console with a window size, as a pseudo-terminal.
type sizedConn struct {
	net.Conn
	sizes chan [2]uint16
}

func (c sizedConn) Resize(rows, cols uint16) error {
	c.sizes <- [2]uint16{rows, cols}
	return nil
}

// The writer's window size reaches a console that has one, also a new
// console after a restart; a watcher's does not; a bad frame ends the
// session that sent it.
func TestRelayResize(t *testing.T) {
	sizes := make(chan [2]uint16, 8)
	conns := make(chan net.Conn, 4)
	dial := func(ctx context.Context) (io.ReadWriteCloser, error) {
		a, b := net.Pipe()
		conns <- b
		return sizedConn{a, sizes}, nil
	}
	want := func(rows, cols uint16) {
		t.Helper()
		select {
		case got := <-sizes:
			if got != [2]uint16{rows, cols} {
				t.Fatalf("the console got size %v, want %dx%d", got, rows, cols)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the console never got size %dx%d", rows, cols)
		}
	}
	r := New()
	r.Connect(dial)
	gc := <-conns
	w, err := attach(t, r, ReadWrite, 0)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := attach(t, r, ReadOnly, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher's size first: were it applied, it would come first.
	WriteFrame(ro.c, KindResize, Resize(10, 10))
	WriteFrame(w.c, KindResize, Resize(0, 80)) // no size: dropped
	WriteFrame(w.c, KindResize, Resize(31, 97))
	want(31, 97)
	WriteFrame(w.c, KindResize, Resize(40, 120))
	want(40, 120)

	// A new console (the VM restarted) starts with the writer's size.
	gc.Close()
	r.Connect(dial)
	<-conns
	want(40, 120)

	WriteFrame(w.c, KindResize, []byte{1, 2, 3})
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ReadFrame(w.br); err != nil {
			break // the daemon's side closed the session
		}
	}
	select {
	case got := <-sizes:
		t.Errorf("unexpected size %v", got)
	default:
	}
}

// A serial line has no window size: a resize is dropped, the session
// goes on.
func TestRelayResizeSerial(t *testing.T) {
	g := newGuest()
	r := New()
	r.Connect(g.dial)
	gc := g.next(t)
	w, err := attach(t, r, ReadWrite, 0)
	if err != nil {
		t.Fatal(err)
	}
	WriteFrame(w.c, KindResize, Resize(24, 80))
	WriteFrame(w.c, KindInput, []byte("after\n"))
	gc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(gc).ReadString('\n'); err != nil || line != "after\n" {
		t.Fatalf("the guest read %q, %v", line, err)
	}
}

func TestResizePayload(t *testing.T) {
	rows, cols, err := ParseResize(Resize(50, 132))
	if err != nil || rows != 50 || cols != 132 {
		t.Errorf("round trip: %d %d %v", rows, cols, err)
	}
	if _, _, err := ParseResize([]byte{0, 1}); err == nil || !strings.Contains(err.Error(), "4 bytes") {
		t.Errorf("short payload: %v", err)
	}
}

// A ring takes memory only for what was written to it, up to its size.
func TestRingGrowsWithUse(t *testing.T) {
	r := newRing(RingSize)
	if cap(r.buf) != 0 {
		t.Fatalf("an unused ring holds %d bytes", cap(r.buf))
	}
	r.Write([]byte("boot\n"))
	if cap(r.buf) >= RingSize {
		t.Errorf("a ring holding 5 bytes took %d", cap(r.buf))
	}
	chunk := []byte(strings.Repeat("x", 1000) + "\n")
	var all []byte
	for len(all) < 2*RingSize {
		r.Write(chunk)
		all = append(all, chunk...)
	}
	all = append([]byte("boot\n"), all...)
	if got := r.bytes(); !bytes.Equal(got, all[len(all)-RingSize:]) {
		t.Errorf("after wrapping the ring holds %d bytes that are not the last %d written", len(got), RingSize)
	}
	r.reset()
	if len(r.bytes()) != 0 {
		t.Errorf("reset ring holds %q", r.bytes())
	}
	r.Write([]byte("again\n"))
	if got := string(r.bytes()); got != "again\n" {
		t.Errorf("after reset: %q", got)
	}
}
