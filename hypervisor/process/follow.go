package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// OffsetSuffix is appended to a followed file's path to name the sidecar
// file that records how far it has been copied.
const OffsetSuffix = ".offset"

// maxLine bounds a line held back while waiting for its newline; a longer
// run of bytes is passed on as a line of its own.
const maxLine = 64 << 10

// Follower copies the lines appended to a file into a writer. It is woken
// by filesystem notifications, so it does no work while the file is idle,
// and it has no goroutine and no open file then either: it has them only
// while there is something to copy (a host may follow a thousand quiet
// VMs).
//
// How far it has copied is kept in path+OffsetSuffix, updated after every
// batch, so a follower started after a daemon restart resumes where the
// last one stopped: lines are neither lost nor repeated (unless the host
// crashes between a write and the sidecar update, which can repeat that
// batch). The followed file is expected to grow; when another file takes
// its name (a different inode) or it shrinks below the saved offset,
// following restarts from its beginning.
//
// What has been copied is trimmed from the file: its blocks are given back
// (a hole is punched; the size the writer appends at stays), so a guest
// printing without end costs the run directory, often RAM under /run,
// no more than the copy in the log. Where the file system cannot punch
// holes the file keeps its bytes until TruncateCopied empties it.
type Follower struct {
	path    string
	offPath string
	w       io.Writer

	// woken is set from a notification until a copy begins; while it is
	// set, further notifications need no goroutine of their own (the
	// pending copy sees their bytes).
	woken atomic.Bool

	stopOnce sync.Once
	done     chan struct{}

	// run is held by whoever copies; it owns the fields below.
	run         sync.Mutex
	stopContext func() bool // undoes the context.AfterFunc
	stopped     bool
	f           *os.File
	off         int64  // bytes of the file consumed (copied or held in partial)
	ino         uint64 // inode of the file off belongs to, 0 if unknown
	partial     []byte
	offFile     *os.File
	err         error
	trimmed     int64 // bytes of f before this offset have been given back
	saved       int64 // the offset the sidecar holds
	noTrim      bool  // the file cannot be trimmed (read-only, no hole support)
}

// trimChunk is how much copied output may stay in the file before its
// blocks are given back: one system call per chunk, not per line.
const trimChunk = 256 << 10

// Follow starts copying the lines appended to path into w, one Write per
// line (each ending in '\n'). It copies what is already in the file beyond
// the saved offset first. The file need not exist yet, but its directory
// must. Following ends when ctx is cancelled or Stop is called; either way
// the lines already in the file are copied first.
func Follow(ctx context.Context, path string, w io.Writer) (*Follower, error) {
	if w == nil {
		w = io.Discard
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", path, err)
	}
	fl := &Follower{
		path:    abs,
		offPath: abs + OffsetSuffix,
		w:       w,
		done:    make(chan struct{}),
	}
	off, ino, err := readOffset(fl.offPath)
	if err != nil {
		return nil, err
	}
	fl.off, fl.ino, fl.saved = off, ino, off
	if err := files.subscribe(fl.path, fl); err != nil {
		return nil, fmt.Errorf("follow %s: %w", path, err)
	}
	// What the file holds already (a file that appears or grows from now
	// on is noticed by the watch).
	if mayHoldNew(fl.path, off, ino) {
		fl.wake()
	}
	fl.run.Lock()
	fl.stopContext = context.AfterFunc(ctx, func() { _ = fl.Stop() })
	fl.run.Unlock()
	return fl, nil
}

// mayHoldNew reports whether the file at path may hold what was not
// copied yet: anything but a missing file or one of the saved offset's
// size and inode (ino 0: unknown).
func mayHoldNew(path string, off int64, ino uint64) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) // a copy reports the error
	}
	return fi.Size() != off || ino != 0 && inode(fi) != ino
}

// readOffset reads a saved offset and the inode number of the file it
// belongs to (0 if unknown); a missing or unreadable sidecar means start
// from the beginning.
func readOffset(path string) (int64, uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read follow offset: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, 0, nil
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return 0, 0, nil
	}
	var ino uint64
	if len(f) > 1 {
		ino, _ = strconv.ParseUint(f[1], 10, 64)
	}
	return n, ino, nil
}

// Stop copies the lines the file holds now (and a final line without its
// newline), stops following and returns the first error writing to w or
// reading the file. It may be called more than once.
func (fl *Follower) Stop() error {
	fl.stopOnce.Do(func() {
		files.unsubscribe(fl.path, fl)
		fl.run.Lock()
		if fl.stopContext != nil {
			fl.stopContext()
		}
		fl.copy(true)
		fl.stopped = true
		fl.closeFiles()
		fl.run.Unlock()
		close(fl.done)
	})
	<-fl.done
	return fl.err
}

// Done is closed once the follower has stopped.
func (fl *Follower) Done() <-chan struct{} { return fl.done }

// wake is called when something happened to the file: it starts a
// goroutine to copy, unless one is started already and has not begun.
// It never blocks.
func (fl *Follower) wake() {
	if fl.woken.Swap(true) {
		return
	}
	go fl.catchUp()
}

// catchUp copies what was appended since the last copy.
func (fl *Follower) catchUp() {
	fl.run.Lock()
	defer fl.run.Unlock()
	// From here on a notification starts another copy: this one may have
	// read past the bytes it announces, or not.
	fl.woken.Store(false)
	if fl.stopped {
		return
	}
	fl.copy(false)
	if fl.replaced() {
		// The old file has been read to its end; switch to the one that
		// now has the name.
		fl.f.Close()
		fl.f = nil
		fl.copy(false)
	}
	// Idle, a follower holds no descriptor: every fork of the daemon
	// copies its descriptor table and every exec closes the copy, so a
	// thousand followed VMs would slow every launch. The next copy opens
	// the file again, by its name.
	fl.closeFiles()
}

// closeFiles closes the followed file and the offset sidecar, if open.
func (fl *Follower) closeFiles() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
	if fl.offFile != nil {
		fl.offFile.Close()
		fl.offFile = nil
	}
}

// replaced reports whether the open file no longer has the followed name
// (removed, or another file renamed over it).
func (fl *Follower) replaced() bool {
	if fl.f == nil {
		return false
	}
	cur, err := fl.f.Stat()
	if err != nil {
		return true
	}
	now, err := os.Stat(fl.path)
	return err != nil || !os.SameFile(cur, now)
}

// copy passes on the complete lines appended since the last call; final
// also passes on a trailing line without newline.
func (fl *Follower) copy(final bool) {
	if fl.f == nil {
		f, writable, err := openFollowed(fl.path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				fl.setErr(fmt.Errorf("follow %s: %w", fl.path, err))
			}
			return
		}
		fl.f, fl.noTrim = f, !writable
		if fi, err := f.Stat(); err == nil {
			ino := inode(fi)
			// A new file has no trims yet (nor does a new follower know
			// of earlier ones; punching a hole again where there is one
			// costs nothing).
			switch {
			case fl.ino != 0 && ino != 0 && ino != fl.ino:
				// Another file now has the name: it starts afresh.
				// What is left of the old one's last line ends here.
				if len(fl.partial) > 0 {
					fl.write(append(fl.partial, '\n'))
				}
				fl.off, fl.partial, fl.trimmed, fl.saved = 0, nil, 0, 0
			case fi.Size() < fl.off-int64(len(fl.partial)):
				fl.off, fl.partial, fl.trimmed, fl.saved = 0, nil, 0, 0
			}
			fl.ino = ino
		}
	}
	start := fl.off - int64(len(fl.partial))
	// A buffer only while copying: a host with a thousand quiet VMs should
	// not keep a thousand idle buffers.
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	buf := *bp
	for {
		n, err := fl.f.ReadAt(buf, fl.off)
		if n > 0 {
			fl.off += int64(n)
			fl.emit(buf[:n])
		}
		if err != nil {
			if err != io.EOF {
				fl.setErr(fmt.Errorf("follow %s: %w", fl.path, err))
			}
			break
		}
	}
	if final && len(fl.partial) > 0 {
		fl.write(append(fl.partial, '\n'))
		fl.partial = nil
	}
	if end := fl.off - int64(len(fl.partial)); end != start {
		fl.saveOffset(end)
	}
	if end := fl.off - int64(len(fl.partial)); end-fl.trimmed >= trimChunk || (final && end > fl.trimmed) {
		fl.trim(end)
	}
}

// openFollowed opens the followed file read-write, to give copied blocks
// back, or read-only where the daemon may only read it (followed, then,
// untrimmed). A file that does not exist yet is not opened either way:
// one that appeared between the two attempts would be followed without
// trimming for good.
func openFollowed(path string) (f *os.File, writable bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) {
		return nil, false, err
	}
	f, err = os.Open(path)
	return f, false, err
}

// trim gives back the blocks of the bytes before end, which have been
// copied. Only bytes the sidecar says were copied go: a restart would
// copy the others again, and find zeros.
func (fl *Follower) trim(end int64) {
	end = min(end, fl.saved)
	if fl.noTrim || end <= fl.trimmed {
		return
	}
	if fl.offFile == nil {
		// Saved by an earlier copy; the file was closed since.
		f, err := os.OpenFile(fl.offPath, os.O_RDWR, 0)
		if err != nil {
			return
		}
		fl.offFile = f
	}
	// The offset must be on disk before its bytes are gone.
	if err := fl.offFile.Sync(); err != nil {
		fl.setErr(fmt.Errorf("save follow offset: %w", err))
		return
	}
	switch err := punchHole(fl.f, fl.trimmed, end-fl.trimmed); {
	case err == nil:
		fl.trimmed = end
	case errors.Is(err, errors.ErrUnsupported):
		fl.noTrim = true
	default:
		fl.setErr(fmt.Errorf("trim %s: %w", fl.path, err))
		fl.noTrim = true
	}
}

// readBuffers lends the copy loop its read buffer.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// emit splits b into lines, writing complete ones and holding the rest.
func (fl *Follower) emit(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			fl.partial = append(fl.partial, b...)
			if len(fl.partial) >= maxLine {
				fl.write(append(fl.partial, '\n'))
				fl.partial = nil
			}
			return
		}
		if len(fl.partial) > 0 {
			fl.partial = append(fl.partial, b[:i+1]...)
			fl.write(fl.partial)
			fl.partial = nil
		} else {
			fl.write(b[:i+1])
		}
		b = b[i+1:]
	}
}

func (fl *Follower) write(line []byte) {
	// A copy: writers may keep what they are given.
	l := append([]byte(nil), line...)
	if _, err := fl.w.Write(l); err != nil {
		fl.setErr(fmt.Errorf("follow %s: write: %w", fl.path, err))
	}
}

func (fl *Follower) setErr(err error) {
	if fl.err == nil {
		fl.err = err
	}
}

// saveOffset overwrites the sidecar in place with fixed-width numbers (the
// offset and the file's inode): a write of 42 bytes at offset 0 lands
// within one disk sector, so a crash leaves the old or the new value, and
// it costs no file creation per batch.
func (fl *Follower) saveOffset(off int64) {
	if fl.offFile == nil {
		f, err := os.OpenFile(fl.offPath, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			fl.setErr(fmt.Errorf("save follow offset: %w", err))
			return
		}
		fl.offFile = f
	}
	if _, err := fl.offFile.WriteAt(offsetRecord(off, fl.ino), 0); err != nil {
		fl.setErr(fmt.Errorf("save follow offset: %w", err))
		return
	}
	fl.saved = off
}

// offsetRecord is the sidecar's content: always the same width, so that an
// overwrite in place leaves nothing of the old value.
func offsetRecord(off int64, ino uint64) []byte {
	return []byte(fmt.Sprintf("%020d %020d\n", off, ino))
}

// inode returns the inode number of a file, 0 if unknown.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// TruncateCopied empties the file at path when a Follower has copied all
// it holds (the saved offset is its size), and resets the saved offset, so
// that its size too starts again from zero. Call it only while nothing
// writes to the file and nothing follows it: before a new writer starts.
// A file with bytes not yet copied is left alone, for the next Follower.
func TruncateCopied(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	off, ino, err := readOffset(abs + OffsetSuffix)
	if err != nil {
		return err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	if fi.Size() == 0 || inode(fi) != ino || off != fi.Size() {
		return nil
	}
	// The file first: a crash before the offset is reset leaves an offset
	// beyond the end, which a Follower takes as a file started afresh.
	if err := os.Truncate(abs, 0); err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	f, err := os.OpenFile(abs+OffsetSuffix, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("save follow offset: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(offsetRecord(0, ino), 0); err != nil {
		return fmt.Errorf("save follow offset: %w", err)
	}
	return nil
}
