package hooks

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const readBufSize = 32 * 1024

// readBufs recycles read buffers between runs: a fresh 32 KiB buffer per
// stream would grow each reader goroutine's stack, which is a noticeable
// part of the cost of a hook that prints nothing. A Pool holds no lock
// while a hook runs.
var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// lineSink turns the bytes of a hook's stdout and stderr into whole,
// tagged lines on one writer. Both streams share its mutex, which also
// guards their partial lines, so each line reaches the writer in a single
// Write call and lines of the two streams never mix. The mutex belongs to
// one hook run: nothing is shared between runs.
type lineSink struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	streams  []*lineStream
	detached bool
}

// lineStream is one output pipe of the hook.
type lineStream struct {
	sink     *lineSink
	prefix   []byte
	partial  []byte
	f        *os.File
	draining atomic.Bool
	stopped  chan struct{}
}

func newLineSink(w io.Writer) *lineSink {
	if w == nil {
		w = io.Discard
	}
	return &lineSink{w: w}
}

func (s *lineSink) stream(f *os.File, prefix string) *lineStream {
	ls := &lineStream{sink: s, prefix: []byte(prefix), f: f, stopped: make(chan struct{})}
	s.streams = append(s.streams, ls)
	return ls
}

// feed takes a chunk read from the stream's pipe.
func (ls *lineStream) feed(data []byte) {
	s := ls.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached {
		return
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			ls.partial = append(ls.partial, data...)
			data = nil
		} else {
			ls.partial = append(ls.partial, data[:i]...)
			data = data[i+1:]
			s.emitAll(ls)
			continue
		}
		// A line longer than MaxLine goes out in pieces as it arrives, so
		// memory stays bounded whatever the hook prints.
		for len(ls.partial) > MaxLine {
			s.emit(ls.prefix, ls.partial[:MaxLine])
			ls.partial = append(ls.partial[:0], ls.partial[MaxLine:]...)
		}
	}
}

// emitAll writes the stream's partial line, in pieces of at most MaxLine,
// and empties it. Called with s.mu held.
func (s *lineSink) emitAll(ls *lineStream) {
	p := ls.partial
	for {
		n := min(len(p), MaxLine)
		s.emit(ls.prefix, p[:n])
		p = p[n:]
		if len(p) == 0 {
			break
		}
	}
	ls.partial = ls.partial[:0]
}

// emit writes one tagged line. Called with s.mu held. A failing writer
// does not fail the hook: the log is best effort, the hook's result is not.
func (s *lineSink) emit(prefix, line []byte) {
	s.buf = append(s.buf[:0], prefix...)
	s.buf = append(s.buf, line...)
	s.buf = append(s.buf, '\n')
	_, _ = s.w.Write(s.buf)
}

// detach delivers what is left of every partial line (a last line without
// a newline still counts) and stops all further writes, so that nothing
// reaches the writer after Run has returned.
func (s *lineSink) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ls := range s.streams {
		if len(ls.partial) > 0 {
			s.emitAll(ls)
		}
		ls.partial = nil
	}
	s.detached = true
	s.buf = nil
}

// read is the reader goroutine of a hook that runs longer than
// readerDelay: it copies the pipe into the sink until end of file, or,
// once drain has been called, until the pipe is empty. Then it signals
// stopped and discards whatever leftover background processes still write.
func (ls *lineStream) read() {
	bp := readBufs.Get().(*[readBufSize]byte)
	defer readBufs.Put(bp)
	eof := ls.copyOut(bp[:])
	close(ls.stopped)
	if !eof {
		ls.discard(bp[:])
	}
	_ = ls.f.Close()
}

// finishInline drains the pipe in the caller's goroutine, for a hook that
// exited before any reader goroutine was started. Only when a leftover
// process still holds the pipe open does a goroutine take over, to discard
// what it writes.
func (ls *lineStream) finishInline() {
	ls.draining.Store(true)
	bp := readBufs.Get().(*[readBufSize]byte)
	eof := ls.copyOut(bp[:])
	readBufs.Put(bp)
	close(ls.stopped)
	if eof {
		_ = ls.f.Close()
		return
	}
	go func() {
		bp := readBufs.Get().(*[readBufSize]byte)
		defer readBufs.Put(bp)
		ls.discard(bp[:])
		_ = ls.f.Close()
	}()
}

// copyOut feeds the pipe's data to the sink. It reports whether it saw end
// of file (every writer gone) rather than stopping at an empty pipe after
// drain, or at drainLimit.
func (ls *lineStream) copyOut(buf []byte) (eof bool) {
	var drainStart time.Time
	for {
		if ls.draining.Load() {
			// The hook has exited, so whatever it wrote is in the pipe
			// now: read until the pipe is empty, never waiting for more.
			if drainStart.IsZero() {
				drainStart = time.Now()
			} else if time.Since(drainStart) > drainLimit {
				return false
			}
			_ = ls.f.SetReadDeadline(time.Time{})
			n, err := readNow(ls.f, buf)
			if n > 0 {
				ls.feed(buf[:n])
				continue
			}
			switch {
			case err == nil:
				return true // n == 0: end of file
			case errors.Is(err, syscall.EAGAIN):
				return false // empty, but someone still holds it open
			case errors.Is(err, os.ErrDeadlineExceeded):
				continue // drain's wake-up call; the deadline is cleared above
			default:
				return true
			}
		}
		n, err := ls.f.Read(buf)
		if n > 0 {
			ls.feed(buf[:n])
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
	}
}

// discard reads and drops data until end of file, so that a background
// process the hook left holding the pipe neither blocks on a full pipe nor
// dies of SIGPIPE.
func (ls *lineStream) discard(buf []byte) {
	_ = ls.f.SetReadDeadline(time.Time{})
	for {
		if _, err := ls.f.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
}

// readNow makes one non-blocking read attempt: data, end of file (0, nil),
// or EAGAIN when the pipe is empty.
func readNow(f *os.File, buf []byte) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), buf)
			if rerr != syscall.EINTR {
				return true // never wait for readiness
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, rerr
}

// drain asks the reader goroutine to finish with what is in the pipe and
// not to wait for more, waking it if it is blocked in Read.
func (ls *lineStream) drain() {
	ls.draining.Store(true)
	_ = ls.f.SetReadDeadline(time.Now())
}
