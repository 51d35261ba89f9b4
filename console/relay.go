// Package console relays a VM's console between the guest and the people
// attached to it.
//
// A Relay is the daemon's side of one VM's console. It is the only client
// of the hypervisor's console connection and reads it all the time, so a
// guest never waits for a reader and the last output is kept for replay.
// It serves any number of Sessions: at most one may type (a writer), the
// others only watch. After the VM restarted (a new hypervisor process),
// Connect points the same Relay at the new console and the sessions carry
// on, told so by a notice.
//
// Nothing a session does can block the relay or another session: output
// is queued per session and a session that falls too far behind is ended.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Sizes.
const (
	// RingSize is how much recent output is kept for replay.
	RingSize = 256 << 10
	// MaxPending is how much output a session may have waiting before it
	// counts as too slow. A serial port delivers a few bytes at a time,
	// so what waits is counted in bytes and sent in chunks of up to
	// chunkSize.
	MaxPending = 1 << 20
	chunkSize  = 32 << 10
	// MaxSessions bounds the sessions of one console, so that clients
	// that never read cannot make the daemon hold their output without
	// end.
	MaxSessions = 32
	// dialTimeout bounds connecting to a new hypervisor's console.
	dialTimeout = 30 * time.Second
	// writeTimeout bounds one write to the guest's console, whose reader
	// is the emulated serial port and can stall.
	writeTimeout = 10 * time.Second
)

// ErrBusy means another session holds the console for writing, or the
// console has MaxSessions already.
var ErrBusy = errors.New("the console is in use by another client")

// Mode is how a session attaches.
type Mode int

const (
	// ReadWrite types into the console; refused while another session does.
	ReadWrite Mode = iota
	// ReadOnly only watches; any number may.
	ReadOnly
	// Force types into the console, ending the session that did.
	Force
)

// Dial connects to a hypervisor's console.
type Dial func(ctx context.Context) (io.ReadWriteCloser, error)

// Resizer is a console connection that has a window size (a
// pseudo-terminal, whose program is told of a change). A serial line has
// none: its connection is no Resizer and sizes are dropped. Resize must
// not block (an ioctl, say): the relay may call it holding its lock.
type Resizer interface {
	Resize(rows, cols uint16) error
}

// winsize is a window size, rows and columns.
type winsize struct{ rows, cols uint16 }

// Relay is one VM's console. The zero value is not usable; call New.
type Relay struct {
	mu       sync.Mutex
	ring     *ring
	sessions map[*Session]struct{}
	writer   *Session
	back     io.ReadWriteCloser // nil while not connected
	gen      uint64             // counts Connect and End; stale readers stop
	once     bool               // a console has been connected before
	size     winsize            // the writer's last window size; zero if none
	wmu      sync.Mutex         // serialises writes to back
}

// New returns a Relay with no console connected.
func New() *Relay {
	return &Relay{ring: newRing(RingSize), sessions: map[*Session]struct{}{}}
}

// Connect reads from the console dial reaches from now on, replacing the
// one connected before. Sessions stay attached; if a console was connected
// before, they are told that it is back.
func (r *Relay) Connect(dial Dial) {
	r.mu.Lock()
	r.gen++
	gen := r.gen
	r.dropBackLocked()
	r.mu.Unlock()
	go r.read(gen, dial)
}

// End disconnects the console (the VM stopped) and ends every session
// with e. What was kept for replay is dropped: the next boot starts anew.
func (r *Relay) End(e End) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.dropBackLocked()
	r.ring.reset()
	r.once = false
	for s := range r.sessions {
		r.endLocked(s, e)
	}
}

// Connected reports whether a console is connected.
func (r *Relay) Connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back != nil
}

func (r *Relay) dropBackLocked() {
	if r.back != nil {
		r.back.Close()
		r.back = nil
	}
}

// read connects with dial and copies the console's output until it
// closes or the relay moves on (gen changes).
func (r *Relay) read(gen uint64, dial Dial) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	conn, err := dial(ctx)
	cancel()
	r.mu.Lock()
	if gen != r.gen {
		r.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		return
	}
	if err != nil {
		r.noticeLocked(fmt.Sprintf("cannot reach the VM's console: %v", err))
		r.mu.Unlock()
		return
	}
	r.back = conn
	if rz, ok := conn.(Resizer); ok && r.size != (winsize{}) {
		// A new terminal starts with no size: it gets the writer's,
		// before anyone is told it is back and types into it.
		_ = rz.Resize(r.size.rows, r.size.cols)
	}
	if r.once {
		r.noticeLocked("the VM restarted; its console is back")
	}
	r.once = true
	r.mu.Unlock()

	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			r.mu.Lock()
			if gen != r.gen {
				r.mu.Unlock()
				return
			}
			r.ring.Write(buf[:n])
			for s := range r.sessions {
				r.sendLocked(s, KindOutput, buf[:n])
			}
			r.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	r.mu.Lock()
	if gen == r.gen && r.back == conn {
		r.back = nil
	}
	r.mu.Unlock()
	conn.Close()
}

// input writes what s typed to the console; a session that is not the
// writer (any longer) types into nothing.
func (r *Relay) input(s *Session, p []byte) {
	r.mu.Lock()
	back := r.back
	ok := r.writer == s
	r.mu.Unlock()
	if !ok || back == nil {
		return
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if d, ok := back.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	// A failed write means the console went away; its reader sees that.
	_, _ = back.Write(p)
}

// resize sets the console's window size to what s, if it is the writer,
// says its window is. Only the writer's window counts: watchers see what
// it sees.
func (r *Relay) resize(s *Session, size winsize) {
	if size.rows == 0 || size.cols == 0 {
		return
	}
	r.mu.Lock()
	if r.writer != s {
		r.mu.Unlock()
		return
	}
	r.size = size
	back := r.back
	r.mu.Unlock()
	if rz, ok := back.(Resizer); ok {
		// A failure means the console went away; its reader sees that.
		_ = rz.Resize(size.rows, size.cols)
	}
}

// Attach adds a session. It replays the last lines of output first (all
// that is kept for lines < 0, none for 0). A writer is refused with
// ErrBusy while another one is attached, unless mode is Force, which ends
// the other one.
func (r *Relay) Attach(mode Mode, lines int) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) >= MaxSessions && (mode != Force || r.writer == nil) {
		return nil, fmt.Errorf("%w: %d clients are attached, the most one console serves; detach one first", ErrBusy, len(r.sessions))
	}
	if mode != ReadOnly && r.writer != nil {
		if mode != Force {
			return nil, fmt.Errorf("%w: attach read-only (-r), or take it over (-f)", ErrBusy)
		}
		r.endLocked(r.writer, End{Code: EndTakenOver, Message: "another client took over the console"})
	}
	s := &Session{r: r, wake: make(chan struct{}, 1), ended: make(chan struct{})}
	if replay := r.ring.lastLines(lines); len(replay) > 0 {
		s.pending = append(s.pending, frame{KindOutput, replay})
		s.pendingBytes = len(replay)
		s.wake <- struct{}{}
	}
	r.sessions[s] = struct{}{}
	if mode != ReadOnly {
		r.writer = s
	}
	return s, nil
}

// noticeLocked sends every session a notice.
func (r *Relay) noticeLocked(msg string) {
	for s := range r.sessions {
		r.sendLocked(s, KindNotice, []byte(msg))
	}
}

// sendLocked queues a frame for s, output joined to output queued before
// it, and ends s when more than MaxPending waits.
func (r *Relay) sendLocked(s *Session, kind byte, p []byte) {
	if s.pendingBytes+len(p) > MaxPending {
		// What waits is let go now, not after the client has read it:
		// it is what the client could not keep up with, and a client
		// that reads nothing holds it until its write times out (for
		// each of MaxSessions sessions). The end frame still comes;
		// an attach again replays from the ring.
		s.pending, s.pendingBytes = nil, 0
		r.endLocked(s, End{Code: EndTooSlow, Message: "the client did not keep up with the console's output; attach again (-n replays the last lines)"})
		return
	}
	s.pendingBytes += len(p)
	if n := len(s.pending); kind == KindOutput && n > 0 && s.pending[n-1].kind == KindOutput && len(s.pending[n-1].p)+len(p) <= chunkSize {
		s.pending[n-1].p = append(s.pending[n-1].p, p...)
	} else {
		s.pending = append(s.pending, frame{kind, append([]byte(nil), p...)})
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// endLocked removes s and has it end with e.
func (r *Relay) endLocked(s *Session, e End) {
	if _, ok := r.sessions[s]; !ok {
		return
	}
	delete(r.sessions, s)
	if r.writer == s {
		r.writer = nil
	}
	s.end = e
	close(s.ended)
}

// leave removes s, which ended on its own (the client left).
func (r *Relay) leave(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sessions[s]; !ok {
		return
	}
	delete(r.sessions, s)
	if r.writer == s {
		r.writer = nil
	}
}
