package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmstated/vmstated/config"
)

// Log sources tag every line of a VM's log.
const (
	sourceDaemon = "vmstated"
)

// vmLog is one VM's log file. There is one per file for the daemon's
// lifetime (two writers on one file would rotate it twice), shared by the
// daemon's own lines, the hooks' output and the hypervisor's output. Every
// line gets a timestamp and the tag of its source.
type vmLog struct {
	path string

	mu        sync.Mutex
	out       *rotatingFile
	followers map[chan []byte]struct{}
	// The file is closed once no line came for idleClose (see closeIdle):
	// lastWrite is when the last one came, closer the timer, armed while
	// the file is open.
	lastWrite time.Time
	closer    *time.Timer
	armed     bool
	closed    bool
}

// idleClose is how long a VM's log stays open after its last line. Every
// fork of the daemon copies its descriptor table and every exec closes
// the copy, so a thousand quiet VMs holding their logs open made every
// launch slower; a log written to steadily stays open.
const idleClose = 50 * time.Millisecond

func newVMLog(path string, maxSizeMB, maxFiles int) *vmLog {
	return &vmLog{
		path:      path,
		out:       newRotatingFile(path, maxSizeMB, maxFiles),
		followers: make(map[chan []byte]struct{}),
	}
}

// logLimits are the rotation settings of cfg: the config's defaults when
// there is no valid config yet. A log_max_files of 0 keeps every backup.
func logLimits(cfg *settings) (sizeMB, files int) {
	if cfg == nil {
		return config.DefaultLogMaxSizeMB, config.DefaultLogMaxFiles
	}
	return cfg.logMaxSizeMB, cfg.logMaxFiles
}

// setLimits changes the rotation settings; the next write follows them.
func (l *vmLog) setLimits(sizeMB, files int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out.maxSize, l.out.maxBackups = int64(sizeMB)<<20, files
}

// writeLine writes one complete, already stamped line and hands it to
// followers. A follower that cannot keep up is dropped: its channel closes.
func (l *vmLog) writeLine(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A log that cannot be written (disk full) must not stop the VM; the
	// line is lost, and so would be any report of it.
	_, _ = l.out.Write(line)
	l.lastWrite = time.Now()
	if !l.armed && !l.closed {
		l.armed = true
		if l.closer == nil {
			l.closer = time.AfterFunc(idleClose, l.closeIdle)
		} else {
			l.closer.Reset(idleClose)
		}
	}
	for ch := range l.followers {
		select {
		case ch <- line:
		default:
			delete(l.followers, ch)
			close(ch)
		}
	}
}

// closeIdle closes the file when no line came for idleClose, or waits
// for the rest of that time; the next line opens it again.
func (l *vmLog) closeIdle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.armed {
		return
	}
	if left := idleClose - time.Since(l.lastWrite); left > 0 {
		l.closer.Reset(left)
		return
	}
	l.armed = false
	_ = l.out.Close()
}

// stamp formats one log line.
func stamp(t time.Time, source string, text []byte) []byte {
	b := make([]byte, 0, len(text)+len(source)+40)
	b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, ' ')
	if source != "" {
		b = append(b, '[')
		b = append(b, source...)
		b = append(b, "] "...)
	}
	b = append(b, text...)
	if len(text) == 0 || text[len(text)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// Printf writes one line from the daemon itself.
func (l *vmLog) Printf(format string, args ...any) {
	l.writeLine(stamp(time.Now(), sourceDaemon, []byte(fmt.Sprintf(format, args...))))
}

// Writer returns a writer that stamps every line written to it with the
// time and, unless source is empty (the writer tags lines itself), with
// "[source]".
// Partial lines wait for their end; each writer keeps its own partial line,
// so two sources never merge into one line.
func (l *vmLog) Writer(source string) io.Writer {
	return &lineWriter{log: l, source: source}
}

// Follow returns a channel of the lines written from now on, and a function
// to stop following. The channel closes when the follower is stopped, falls
// too far behind, or the log is closed.
func (l *vmLog) Follow() (<-chan []byte, func()) {
	ch := make(chan []byte, 256)
	l.mu.Lock()
	l.followers[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.followers[ch]; ok {
			delete(l.followers, ch)
			close(ch)
		}
	}
}

// Close flushes and closes the file and ends all followers.
func (l *vmLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.followers {
		delete(l.followers, ch)
		close(ch)
	}
	l.closed, l.armed = true, false
	if l.closer != nil {
		l.closer.Stop()
	}
	return l.out.Close()
}

// maxLine bounds a line kept waiting for its newline; longer ones are
// written in pieces so memory stays bounded.
const maxLine = 64 << 10

type lineWriter struct {
	log    *vmLog
	source string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.log.writeLine(stamp(time.Now(), w.source, w.buf[:maxLine]))
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			line = append(w.buf, line...)
			w.buf = w.buf[:0]
		}
		w.log.writeLine(stamp(time.Now(), w.source, line))
		p = p[i+1:]
	}
	return n, nil
}
