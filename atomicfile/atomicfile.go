// Package atomicfile replaces files whole: a reader, or a daemon that dies
// at any instant, finds the old content or the new one, never a mix or a
// truncated file. Every file the daemon replaces goes through Write:
// state records, driver handles, generated hypervisor configs.
//
// Atomicity against a crash of the writer comes from the rename alone. A
// crash of the host is another matter: only data flushed to the disk
// survives it. Options.Durable flushes the file before the rename and the
// directory after it; Sync flushes a file that was written without it, so
// that a caller can write many files at once and flush them together
// later, off the path of the work that wrote them.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
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
