// Package ttyconsole is the daemon's side of a VM console that is a
// terminal device the daemon holds: an exec VM's pseudo-terminal, a bhyve
// VM's nmdm pair. One goroutine reads the device all the time, so the VM
// never waits for a reader while the daemon runs: every line goes to the
// VM's log, and everything to the console's one connection (the daemon's
// relay) while there is one. What comes while there is none (before the
// relay has connected, after a daemon restart) waits, up to maxBacklog,
// for the next connection, so that a replay of the console shows it.
package ttyconsole

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
)

// DrainWait bounds waiting, once the VM has exited, for the last output
// the device holds. The VM's processes are gone by then, so the device
// hangs up at once unless a process outside the VM still holds its
// other side.
const DrainWait = 5 * time.Second

// maxLine is the longest line the log waits for; a longer one is
// written in parts, so that a guest that never ends a line cannot make
// the daemon hold its output without end.
const maxLine = 4096

// maxBacklog bounds the output kept while no connection reads: the last
// bytes are kept.
const maxBacklog = 64 << 10

// Resize sets a device's window size.
type Resize func(dev *os.File, rows, cols uint16) error

// Console is the daemon's side of one VM's console device.
type Console struct {
	dev    *os.File // nil when it could not be had: err says why
	err    error
	resize Resize
	log    lineWriter
	done   chan struct{} // closed when the device hung up or was closed

	mu      sync.Mutex
	conn    *conn
	backlog []byte // output read while conn was nil, for the next one
}

// New starts reading dev into log (nil drops the output). A nil dev is a
// console that could not be had, err saying why; its Connect says so,
// wrapping hypervisor.ErrNotSupported.
// resize, if not nil, makes connections hypervisor-side Resizers (a
// pseudo-terminal); a serial line has no window size.
func New(dev *os.File, err error, log io.Writer, resize Resize) *Console {
	if log == nil {
		log = io.Discard
	}
	c := &Console{dev: dev, err: err, resize: resize, log: lineWriter{w: log}, done: make(chan struct{})}
	if dev == nil {
		close(c.done)
		return c
	}
	go c.read()
	return c
}

func (c *Console) read() {
	defer close(c.done)
	buf := make([]byte, 4096)
	for {
		n, err := c.dev.Read(buf)
		if n > 0 {
			c.log.Write(buf[:n])
			c.mu.Lock()
			cn := c.conn
			if cn == nil {
				c.backlog = appendBounded(c.backlog, buf[:n], maxBacklog)
			}
			c.mu.Unlock()
			if cn != nil {
				// The relay reads all the time; a closed connection
				// fails the write at once.
				_, _ = cn.pw.Write(buf[:n])
			}
		}
		if err != nil || n == 0 {
			// EIO or end of file: the VM's side hung up.
			break
		}
	}
	c.log.flush()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.pw.Close()
		c.conn = nil
	}
	c.mu.Unlock()
}

// Close waits, for at most DrainWait, for the device to hang up (a
// pseudo-terminal does once no process has its other side open), reading
// what it still holds, then closes the daemon's side. It runs once the
// VM's processes are gone, and returns a message for the exit's detail
// when the wait ran out.
func (c *Console) Close() string {
	if c.CloseAfter(DrainWait) {
		return "a process outside the VM still holds its console; the console is closed"
	}
	return ""
}

// CloseAfter is Close for a device that does not hang up when the VM's
// side closes (an nmdm pair): it reads for wait, or until a hang-up, and
// reports whether the wait ran out.
func (c *Console) CloseAfter(wait time.Duration) (timedOut bool) {
	if c.dev == nil {
		return false
	}
	select {
	case <-c.done:
	case <-time.After(wait):
		timedOut = true
	}
	c.dev.Close()
	<-c.done
	return timedOut
}

// Connect returns the console's connection, replacing the one before
// (which reads EOF from now on). A console that could not be had says
// why, at once and whatever ctx.
func (c *Console) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	if c.dev == nil {
		// Not supported, as a VM without a console: attaching is refused
		// with the reason instead of waiting for output that never comes.
		return nil, fmt.Errorf("%w: the console's device could not be had: %w; the VM runs without a console until it restarts", hypervisor.ErrNotSupported, c.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-c.done:
		return nil, fmt.Errorf("the console's device: %w", hypervisor.ErrExited)
	default:
	}
	pr, pw := io.Pipe()
	cn := &conn{c: c, pr: pr, pw: pw}
	c.mu.Lock()
	if c.conn != nil {
		c.conn.pw.Close()
	}
	c.conn = cn
	cn.pending, c.backlog = c.backlog, nil
	c.mu.Unlock()
	if c.resize != nil {
		return sizedConn{cn}, nil
	}
	return cn, nil
}

// conn is the console's connection to the device: the VM's output in,
// what is typed out.
type conn struct {
	c      *Console
	pr     *io.PipeReader
	pw     *io.PipeWriter
	closed sync.Once
	// pending is what the device said before this connection, read
	// first (only Read touches it).
	pending []byte
}

func (cn *conn) Read(p []byte) (int, error) {
	if len(cn.pending) > 0 {
		n := copy(p, cn.pending)
		cn.pending = cn.pending[n:]
		return n, nil
	}
	return cn.pr.Read(p)
}

// Write types p into the device. A guest that does not read its console
// lets the device fill up; the relay's write deadline bounds the wait.
func (cn *conn) Write(p []byte) (int, error) {
	n, err := cn.c.dev.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the VM does not read its console: %w", err)
	}
	return n, err
}

// SetWriteDeadline bounds the writes to the device.
func (cn *conn) SetWriteDeadline(t time.Time) error { return cn.c.dev.SetWriteDeadline(t) }

func (cn *conn) Close() error {
	cn.closed.Do(func() {
		cn.pr.Close()
		cn.c.mu.Lock()
		if cn.c.conn == cn {
			cn.c.conn = nil
		}
		cn.c.mu.Unlock()
	})
	return nil
}

// sizedConn is a connection to a device with a window size.
type sizedConn struct{ *conn }

// Resize sets the device's window size (a pseudo-terminal's program gets
// SIGWINCH).
func (s sizedConn) Resize(rows, cols uint16) error { return s.c.resize(s.c.dev, rows, cols) }

// lineWriter passes whole lines on, one Write each, as Spec.Console
// wants them; a line longer than maxLine goes in parts.
type lineWriter struct {
	w       io.Writer
	partial []byte
}

func (l *lineWriter) Write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			for len(l.partial) >= maxLine {
				l.emit(append(l.partial[:maxLine:maxLine], '\n'))
				l.partial = append(l.partial[:0], l.partial[maxLine:]...)
			}
			return
		}
		l.partial = append(l.partial, p[:i+1]...)
		l.emit(l.partial)
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
}

func (l *lineWriter) flush() {
	if len(l.partial) > 0 {
		l.emit(append(l.partial, '\n'))
		l.partial = nil
	}
}

func (l *lineWriter) emit(line []byte) {
	// A log that cannot be written must not stop the console.
	_, _ = l.w.Write(line)
}

// appendBounded appends p to b and keeps the last max bytes.
func appendBounded(b, p []byte, max int) []byte {
	b = append(b, p...)
	if len(b) > max {
		b = append(b[:0:0], b[len(b)-max:]...)
	}
	return b
}
