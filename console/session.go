package console

import (
	"bufio"
	"errors"
	"io"
	"time"
)

type frame struct {
	kind byte
	p    []byte
}

// clientWriteTimeout bounds one write to a client: one that stops reading
// is let go rather than held for ever.
const clientWriteTimeout = 30 * time.Second

// Session is one client attached to a Relay.
type Session struct {
	r    *Relay
	wake chan struct{} // a token when pending has something
	// pending and pendingBytes are guarded by r.mu.
	pending      []frame
	pendingBytes int
	ended        chan struct{} // closed by the relay, with end set
	end          End
}

// take returns what waits to be sent.
func (s *Session) take() []frame {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	f := s.pending
	s.pending, s.pendingBytes = nil, 0
	return f
}

// Serve speaks the frame protocol with a client over c (its reads
// through br, which may hold bytes already read from c) until the client
// leaves or the relay ends the session, whose end frame it sends first.
// Either way the session is over when it returns.
func (s *Session) Serve(c io.ReadWriter, br *bufio.Reader) error {
	defer s.r.leave(s)
	left := make(chan error, 1)
	go func() { left <- s.readClient(br) }()
	write := func(frames []frame) error {
		for _, f := range frames {
			if d, ok := c.(interface{ SetWriteDeadline(time.Time) error }); ok {
				_ = d.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
			}
			if err := WriteFrame(c, f.kind, f.p); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		select {
		case <-s.wake:
			if err := write(s.take()); err != nil {
				return err
			}
		case <-s.ended:
			// Output already queued goes out before the end.
			if err := write(s.take()); err != nil {
				return err
			}
			return write([]frame{{KindEnd, s.end.encode()}})
		case err := <-left:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// readClient passes on what the client types until it leaves.
func (s *Session) readClient(br *bufio.Reader) error {
	for {
		kind, p, err := ReadFrame(br)
		if err != nil {
			return err
		}
		switch kind {
		case KindInput:
			s.r.input(s, p)
		case KindResize:
			rows, cols, err := ParseResize(p)
			if err != nil {
				return err
			}
			s.r.resize(s, winsize{rows, cols})
		default:
			return errors.New("console: unknown frame kind from the client")
		}
	}
}

// Close ends a session that will not be served (or no longer is).
func (s *Session) Close() { s.r.leave(s) }
