package hooks

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
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

// read copies the pipe into the sink until end of file or until draining
// has emptied it. Then it signals stopped and goes on reading, discarding,
// until every writer (a leftover background process) has closed the pipe.
func (ls *lineStream) read() {
	f := ls.f
	bp := readBufs.Get().(*[readBufSize]byte)
	defer readBufs.Put(bp)
	buf := bp[:]
	var drainStart time.Time
	eof := false
	for {
		if ls.draining.Load() {
			if drainStart.IsZero() {
				drainStart = time.Now()
			}
			// The hook has exited, so whatever it wrote is in the pipe
			// now. Read exactly that much (and whatever else turns up
			// meanwhile), never waiting for more.
			n, err := pending(f)
			if err != nil || n == 0 || time.Since(drainStart) > drainLimit {
				break
			}
			_ = f.SetReadDeadline(time.Time{})
		}
		n, err := f.Read(buf)
		if n > 0 {
			ls.feed(buf[:n])
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			eof = true
			break
		}
	}
	close(ls.stopped)
	if !eof {
		_ = f.SetReadDeadline(time.Time{})
		for {
			if _, err := f.Read(buf); err != nil {
				break
			}
		}
	}
	_ = f.Close()
}

// drain asks the reader to finish with what is in the pipe and not to wait
// for more, waking it if it is blocked in Read.
func (ls *lineStream) drain() {
	ls.draining.Store(true)
	_ = ls.f.SetReadDeadline(time.Now())
}
