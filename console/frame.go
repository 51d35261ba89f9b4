package console

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The wire protocol of an attached console, both ways: frames of one kind
// byte, a big-endian uint16 payload length, and the payload. Frames let
// the daemon say things that are not the guest's bytes (a notice, why a
// session ended) without a guest ever being able to fake them, and let a
// client tell "the daemon went away" (the stream ends without an end
// frame) from every ending the daemon chose.
const (
	// KindOutput (daemon to client) carries bytes the guest wrote.
	KindOutput byte = 'o'
	// KindNotice (daemon to client) is one line of text for the user
	// from the daemon: the console came back after the VM restarted.
	KindNotice byte = 'n'
	// KindEnd (daemon to client) ends the session; its payload is an End.
	KindEnd byte = 'e'
	// KindInput (client to daemon) carries bytes typed into the console.
	KindInput byte = 'i'
	// KindResize (client to daemon) is the client's window size: rows and
	// columns, two big-endian uint16 (Resize). A client sends it when it
	// attaches and whenever its window changes; the daemon applies the
	// writer's to a console that has a size (a pseudo-terminal) and drops
	// it for one that has not (a serial line). A daemon from before window
	// sizes were applied ignores it, so a client may always send it.
	KindResize byte = 'w'
)

// MaxPayload is the largest payload of one frame.
const MaxPayload = 1<<16 - 1

// Why the daemon ended a session (the first word of an End frame).
const (
	EndStopped   = "stopped"    // the VM stopped
	EndTakenOver = "taken-over" // another client took the console (-f)
	EndTooSlow   = "too-slow"   // the client did not read fast enough
)

// WriteFrame writes p as frames of kind, as many as its length needs (at
// least one).
func WriteFrame(w io.Writer, kind byte, p []byte) error {
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), MaxPayload)
		b := make([]byte, 3+n)
		b[0] = kind
		binary.BigEndian.PutUint16(b[1:3], uint16(n))
		copy(b[3:], p[:n])
		if _, err := w.Write(b); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// ReadFrame reads one frame. A stream that ends between frames returns
// io.EOF; one that ends inside a frame returns io.ErrUnexpectedEOF.
func ReadFrame(r *bufio.Reader) (kind byte, p []byte, err error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	p = make([]byte, binary.BigEndian.Uint16(hdr[1:]))
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// Resize is the payload of a resize frame.
func Resize(rows, cols uint16) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p[0:2], rows)
	binary.BigEndian.PutUint16(p[2:4], cols)
	return p
}

// ParseResize decodes a resize frame's payload into rows and columns.
func ParseResize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("console: a resize frame carries 4 bytes (rows and columns), not %d", len(p))
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), nil
}

// End is the payload of an end frame.
type End struct {
	Code    string // EndStopped, EndTakenOver, EndTooSlow
	Message string // for people
}

func (e End) encode() []byte { return []byte(e.Code + " " + e.Message) }

// ParseEnd decodes an end frame's payload.
func ParseEnd(p []byte) End {
	code, msg, _ := strings.Cut(string(p), " ")
	return End{Code: code, Message: msg}
}

func (e End) Error() string { return fmt.Sprintf("console closed: %s", e.Message) }
