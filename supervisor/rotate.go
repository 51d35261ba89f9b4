package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// backupTimeFormat stamps a rotated log's name: web.log becomes
// web-2026-11-22T07-30-00.000.log, always in UTC. It is the format
// lumberjack uses (the daemon's own log still rotates with it, in UTC
// too), so backups left by earlier versions are counted and removed
// alike. Local time would make names go backwards when daylight saving
// time ends, and the newest backup would sort as older.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// rotatingFile is an append-only log file that is renamed aside, with the
// time in its name, before a write would take it over maxSize bytes;
// only the newest maxBackups of those are kept (0 keeps them all). It
// does its housekeeping on the writer's goroutine, when it rotates,
// rather than in a goroutine of its own for the daemon's lifetime (a host
// has a log per VM). It is not safe for concurrent use; vmLog serializes
// its writes.
type rotatingFile struct {
	path       string
	maxSize    int64
	maxBackups int

	f    *os.File // nil until the first write, and after Close
	size int64
}

func newRotatingFile(path string, maxSizeMB, maxBackups int) *rotatingFile {
	return &rotatingFile{path: path, maxSize: int64(maxSizeMB) << 20, maxBackups: maxBackups}
}

// Write appends p, rotating first when p would not fit.
func (r *rotatingFile) Write(p []byte) (int, error) {
	n := int64(len(p))
	if n > r.maxSize {
		return 0, fmt.Errorf("log write of %d bytes exceeds the maximum log size of %d bytes", n, r.maxSize)
	}
	if r.f == nil {
		if err := r.open(n); err != nil {
			return 0, err
		}
	}
	if r.size+n > r.maxSize {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	w, err := r.f.Write(p)
	r.size += int64(w)
	return w, err
}

// open opens the existing file for appending, or rotates it first when
// the write of n bytes would fill it, or creates it.
func (r *rotatingFile) open(n int64) error {
	fi, err := os.Stat(r.path)
	if os.IsNotExist(err) {
		return r.create(0o600, nil)
	}
	if err != nil {
		return fmt.Errorf("open log %s: %w", r.path, err)
	}
	if fi.Size()+n >= r.maxSize {
		return r.rotate()
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		// Not openable as it is: start a new one in its place.
		return r.create(0o600, nil)
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// rotate closes the file, renames it aside and starts a new, empty one
// with the same mode and owner, then removes the backups beyond the limit.
func (r *rotatingFile) rotate() error {
	if err := r.Close(); err != nil {
		return err
	}
	mode := os.FileMode(0o600)
	fi, err := os.Stat(r.path)
	if err == nil {
		mode = fi.Mode().Perm()
		if err := os.Rename(r.path, r.freeBackupName(time.Now())); err != nil {
			return fmt.Errorf("rotate log %s: %w", r.path, err)
		}
	} else {
		fi = nil
	}
	if err := r.create(mode, fi); err != nil {
		return err
	}
	r.prune()
	return nil
}

// create starts an empty file; like is the file it replaces, whose owner
// it gets (nil for none).
func (r *rotatingFile) create(mode os.FileMode, like os.FileInfo) error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create log %s: %w", r.path, err)
	}
	if like != nil {
		if st, ok := like.Sys().(*syscall.Stat_t); ok {
			// Only root can give it away; otherwise it is ours anyway.
			_ = f.Chown(int(st.Uid), int(st.Gid))
		}
	}
	r.f, r.size = f, 0
	return nil
}

// backupName names a backup made at t, stamped in UTC.
func (r *rotatingFile) backupName(t time.Time) string {
	prefix, ext := r.prefixAndExt()
	return filepath.Join(filepath.Dir(r.path), prefix+t.UTC().Format(backupTimeFormat)+ext)
}

// freeBackupName names a backup made at t, or a millisecond later for
// each one that has that name already (two rotations within a
// millisecond), so no backup replaces another.
func (r *rotatingFile) freeBackupName(t time.Time) string {
	for {
		n := r.backupName(t)
		if _, err := os.Lstat(n); os.IsNotExist(err) {
			return n
		}
		t = t.Add(time.Millisecond)
	}
}

func (r *rotatingFile) prefixAndExt() (string, string) {
	base := filepath.Base(r.path)
	ext := filepath.Ext(base)
	return base[:len(base)-len(ext)] + "-", ext
}

// prune removes the oldest backups beyond maxBackups. A backup is a file
// whose name is the log's with a time stamp that parses; a VM called
// web-2 has no backups of web's to lose.
func (r *rotatingFile) prune() {
	if r.maxBackups <= 0 {
		return
	}
	dir := filepath.Dir(r.path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // nothing removed now; the next rotation tries again
	}
	prefix, ext := r.prefixAndExt()
	type backup struct {
		name string
		t    time.Time
	}
	var bs []backup
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) || len(n) < len(prefix)+len(ext) {
			continue
		}
		t, err := time.Parse(backupTimeFormat, n[len(prefix):len(n)-len(ext)])
		if err != nil {
			continue
		}
		bs = append(bs, backup{n, t})
	}
	if len(bs) <= r.maxBackups {
		return
	}
	// Newest first.
	slices.SortFunc(bs, func(a, b backup) int { return b.t.Compare(a.t) })
	for _, b := range bs[r.maxBackups:] {
		_ = os.Remove(filepath.Join(dir, b.name))
	}
}

// Close closes the file; the next Write opens it again.
func (r *rotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
