package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// OffsetSuffix is appended to a followed file's path to name the sidecar
// file that records how far it has been copied.
const OffsetSuffix = ".offset"

// maxLine bounds a line held back while waiting for its newline; a longer
// run of bytes is passed on as a line of its own.
const maxLine = 64 << 10

// Follower copies the lines appended to a file into a writer. It is woken
// by filesystem notifications, so it does no work while the file is idle.
//
// How far it has copied is kept in path+OffsetSuffix, updated after every
// batch, so a follower started after a daemon restart resumes where the
// last one stopped: lines are neither lost nor repeated (unless the host
// crashes between a write and the sidecar update, which can repeat that
// batch). The followed file is expected only to grow; if it shrinks below
// the saved offset, following restarts from its beginning.
type Follower struct {
	path    string
	offPath string
	w       io.Writer
	watcher *fsnotify.Watcher

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	// Owned by the run goroutine until done is closed.
	f       *os.File
	off     int64 // bytes of the file consumed (copied or held in partial)
	partial []byte
	err     error
}

// Follow starts copying the lines appended to path into w, one Write per
// line (each ending in '\n'). It copies what is already in the file beyond
// the saved offset first. The file need not exist yet, but its directory
// must. Following ends when ctx is cancelled or Stop is called; either way
// the lines already in the file are copied first.
func Follow(ctx context.Context, path string, w io.Writer) (*Follower, error) {
	if w == nil {
		w = io.Discard
	}
	fl := &Follower{
		path:    filepath.Clean(path),
		offPath: filepath.Clean(path) + OffsetSuffix,
		w:       w,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	off, err := readOffset(fl.offPath)
	if err != nil {
		return nil, err
	}
	fl.off = off
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", path, err)
	}
	if err := watcher.Add(filepath.Dir(fl.path)); err != nil {
		watcher.Close()
		return nil, fmt.Errorf("follow %s: watch its directory (does it exist?): %w", path, err)
	}
	fl.watcher = watcher
	go fl.run(ctx)
	return fl, nil
}

// readOffset reads a saved offset; a missing or unreadable sidecar means
// start from the beginning.
func readOffset(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read follow offset: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, nil
	}
	return n, nil
}

// Stop copies the lines the file holds now (and a final line without its
// newline), stops following and returns the first error writing to w or
// reading the file. It may be called more than once.
func (fl *Follower) Stop() error {
	fl.stopOnce.Do(func() { close(fl.stop) })
	<-fl.done
	return fl.err
}

// Done is closed once the follower has stopped.
func (fl *Follower) Done() <-chan struct{} { return fl.done }

func (fl *Follower) run(ctx context.Context) {
	defer close(fl.done)
	defer fl.watcher.Close()
	defer func() {
		if fl.f != nil {
			fl.f.Close()
		}
	}()
	base := filepath.Base(fl.path)
	for {
		fl.copy(false)
		select {
		case ev, ok := <-fl.watcher.Events:
			if !ok {
				fl.copy(true)
				return
			}
			if filepath.Base(ev.Name) != base {
				continue
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				// Read the old file to its end, then switch.
				fl.copy(false)
				if fl.f != nil {
					fl.f.Close()
					fl.f = nil
				}
			}
		case err, ok := <-fl.watcher.Errors:
			if ok && fl.err == nil && err != nil {
				fl.err = fmt.Errorf("follow %s: %w", fl.path, err)
			}
		case <-fl.stop:
			fl.copy(true)
			return
		case <-ctx.Done():
			fl.copy(true)
			return
		}
	}
}

// copy passes on the complete lines appended since the last call; final
// also passes on a trailing line without newline.
func (fl *Follower) copy(final bool) {
	if fl.f == nil {
		f, err := os.Open(fl.path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				fl.setErr(fmt.Errorf("follow %s: %w", fl.path, err))
			}
			return
		}
		fl.f = f
		if fi, err := f.Stat(); err == nil && fi.Size() < fl.off-int64(len(fl.partial)) {
			fl.off, fl.partial = 0, nil
		}
	}
	start := fl.off - int64(len(fl.partial))
	buf := make([]byte, 32<<10)
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
}

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

// saveOffset replaces the sidecar atomically, so a crash leaves either the
// old or the new offset.
func (fl *Follower) saveOffset(off int64) {
	tmp, err := os.CreateTemp(filepath.Dir(fl.offPath), "."+filepath.Base(fl.offPath)+".tmp*")
	if err != nil {
		fl.setErr(fmt.Errorf("save follow offset: %w", err))
		return
	}
	_, err = tmp.WriteString(strconv.FormatInt(off, 10) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), fl.offPath)
	}
	if err != nil {
		os.Remove(tmp.Name())
		fl.setErr(fmt.Errorf("save follow offset: %w", err))
	}
}
