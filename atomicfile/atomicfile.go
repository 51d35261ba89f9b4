// Package atomicfile replaces files whole: a reader, or a daemon that dies
// at any instant, finds the old content or the new one, never a mix or a
// truncated file. Every file the daemon replaces goes through Write or
// Overwrite: state records, driver handles, generated hypervisor configs.
//
// Atomicity against a crash of the writer comes from the rename alone. A
// crash of the host is another matter: only data flushed to the disk
// survives it. Options.Durable flushes the file before the rename and the
// directory after it; Sync flushes a file that was written without it, so
// that a caller can write many files at once and flush them together
// later, off the path of the work that wrote them.
//
// Overwrite is the cheap form for small text files that change often and
// that only their writer reads while it runs (state records, driver
// handles): it rewrites the file in place, keeping its inode. Making a new
// file is what a rename costs; on ext4 that is about 0.4 ms, more than the
// rest of an exec VM's start, and a thousand VMs starting at once pay it
// several times each.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Options tune Write.
type Options struct {
	// Mode is the file's permission bits; zero means 0o600.
	Mode os.FileMode
	// Durable flushes the data to disk before the rename and the
	// directory after it.
	Durable bool
}

// Write replaces path with data.
func Write(path string, data []byte, opts Options) error {
	mode := opts.Mode
	if mode == 0 {
		mode = 0o600
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if opts.Durable {
		if err := tmp.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if opts.Durable {
		if err := SyncDir(dir); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// Sync flushes the file at path to disk (whatever version of it is there
// now: a newer one is as good).
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// SyncDir flushes a directory, so that the renames into it survive a crash
// of the host.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Overwrite replaces the content of the text file at path, in place when
// it can. The new content goes out in one write at offset 0, covering
// whatever was longer in the old content with spaces, and the file is cut
// to the new length after it. A writer that dies at any instant leaves the
// old content or the new one: a write of at most one page at the start of
// a file is copied into the file whole or not at all (the kernel looks for
// a fatal signal only between pages), and a cut that did not happen
// leaves trailing spaces, which a reader of JSON (or of any format that
// ignores trailing white space) skips. A reader running at the same time
// as the write may see a mix, so the file must be one that only its
// writer reads while it runs.
//
// A file that does not exist yet, one that is not a regular file, and
// content larger than a page go through Write instead. opts.Mode applies
// only to a file Write creates; opts.Durable flushes the file after the
// write.
func Overwrite(path string, data []byte, opts Options) error {
	if len(data) > os.Getpagesize() {
		return Write(path, data, opts)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO) {
		// Missing, a symbolic link, or a FIFO nobody reads: a new file
		// takes its place.
		return Write(path, data, opts)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > int64(os.Getpagesize()) {
		f.Close()
		return Write(path, data, opts)
	}
	out := data
	if old := fi.Size(); old > int64(len(data)) {
		out = make([]byte, old)
		copy(out, data)
		copy(out[len(data):], bytes.Repeat([]byte{' '}, int(old)-len(data)))
	}
	err = writeAt0(f, out, len(data), opts.Durable)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeAt0 writes out at the start of f, cuts f to n bytes when out is
// longer, and flushes it when durable.
func writeAt0(f *os.File, out []byte, n int, durable bool) error {
	if _, err := f.WriteAt(out, 0); err != nil {
		return err
	}
	if len(out) > n {
		if err := f.Truncate(int64(n)); err != nil {
			return err
		}
	}
	if durable {
		return f.Sync()
	}
	return nil
}
