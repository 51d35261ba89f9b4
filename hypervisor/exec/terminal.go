package exec

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
	"github.com/vmstated/vmstated/hypervisor/process"
)

// ConsolePTY is the Options.Console that gives the program a
// pseudo-terminal.
const ConsolePTY = "pty"

// TerminalFD is the descriptor, in the VM's process, that holds a
// duplicate of the daemon's side of the pseudo-terminal (console = pty).
// The program does not use it; it is there so that the terminal outlives
// the daemon: a pseudo-terminal whose controlling side is closed hangs up
// its program. A new daemon takes it back from the process (see
// process.DupFD). The program must leave it open (a launcher that closes
// every descriptor it did not open loses its console on the next daemon
// restart). It is the program's fourth descriptor after stdin, stdout
// and stderr; the process's first one is the launch gate's, closed
// before the program runs.
var TerminalFD = process.Config{Gated: true}.InheritFD(0)

// drainWait bounds waiting, after the program exited, for the last output
// its terminal holds. Every process of the VM is gone by then, so the
// terminal hangs up at once unless a process outside the VM holds it.
const drainWait = 5 * time.Second

// maxLine is the longest line the log waits for; a longer one is
// written in parts, so that a program that never ends a line cannot make
// the daemon hold its output without end.
const maxLine = 4096

// terminal is the daemon's side of an exec VM's pseudo-terminal. One
// goroutine reads it all the time, so the program never waits for a
// reader: every line goes to the VM's log, and everything to the
// console's one connection (the daemon's relay) while there is one.
type terminal struct {
	master *os.File // nil when it could not be had: err says why
	err    error
	log    lineWriter
	done   chan struct{} // closed when the program's side hung up

	mu   sync.Mutex
	conn *termConn
}

// newTerminal starts reading master (may be nil, with err saying why)
// into w (nil drops the output).
func newTerminal(master *os.File, err error, w io.Writer) *terminal {
	if w == nil {
		w = io.Discard
	}
	t := &terminal{master: master, err: err, log: lineWriter{w: w}, done: make(chan struct{})}
	if master == nil {
		close(t.done)
		return t
	}
	go t.read()
	return t
}

func (t *terminal) read() {
	defer close(t.done)
	buf := make([]byte, 4096)
	for {
		n, err := t.master.Read(buf)
		if n > 0 {
			t.log.Write(buf[:n])
			t.mu.Lock()
			c := t.conn
			t.mu.Unlock()
			if c != nil {
				// The relay reads all the time; a closed connection
				// fails the write at once.
				_, _ = c.pw.Write(buf[:n])
			}
		}
		if err != nil {
			// EIO: every descriptor of the program's side is closed.
			break
		}
	}
	t.log.flush()
	t.mu.Lock()
	if t.conn != nil {
		t.conn.pw.Close()
		t.conn = nil
	}
	t.mu.Unlock()
}

// close waits, for at most drainWait, for what the terminal still holds
// and closes the daemon's side. It runs once the VM's processes are gone.
func (t *terminal) close() string {
	if t.master == nil {
		return ""
	}
	msg := ""
	select {
	case <-t.done:
	case <-time.After(drainWait):
		msg = "a process outside the VM still holds its terminal; the console is closed"
	}
	t.master.Close()
	<-t.done
	return msg
}

// connect returns the console's connection, replacing the one before
// (which reads EOF from now on).
func (t *terminal) connect(ctx context.Context) (io.ReadWriteCloser, error) {
	if t.master == nil {
		return nil, fmt.Errorf("exec: the console's terminal could not be taken back from the VM's process: %w; the VM runs without a console until it restarts", t.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-t.done:
		return nil, fmt.Errorf("exec: the console's terminal: %w", hypervisor.ErrExited)
	default:
	}
	pr, pw := io.Pipe()
	c := &termConn{t: t, pr: pr, pw: pw}
	t.mu.Lock()
	if t.conn != nil {
		t.conn.pw.Close()
	}
	t.conn = c
	t.mu.Unlock()
	return c, nil
}

// termConn is the console's connection to the terminal: the program's
// output in, what is typed out.
type termConn struct {
	t      *terminal
	pr     *io.PipeReader
	pw     *io.PipeWriter
	closed sync.Once
}

func (c *termConn) Read(p []byte) (int, error) { return c.pr.Read(p) }

// Write types p into the terminal. A program that does not read its
// terminal lets it fill up; the relay's write deadline bounds the wait.
func (c *termConn) Write(p []byte) (int, error) {
	n, err := c.t.master.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("exec: the program does not read its terminal: %w", err)
	}
	return n, err
}

// SetWriteDeadline bounds the writes to the terminal.
func (c *termConn) SetWriteDeadline(t time.Time) error { return c.t.master.SetWriteDeadline(t) }

// Resize sets the terminal's window size, which sends the program's
// foreground process group SIGWINCH.
func (c *termConn) Resize(rows, cols uint16) error { return setWindowSize(c.t.master, rows, cols) }

func (c *termConn) Close() error {
	c.closed.Do(func() {
		c.pr.Close()
		c.t.mu.Lock()
		if c.t.conn == c {
			c.t.conn = nil
		}
		c.t.mu.Unlock()
	})
	return nil
}

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
				l.emit(l.partial[:maxLine])
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
