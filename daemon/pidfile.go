package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning is matched (errors.Is) by the error LockPidfile returns when
// another live process holds the pidfile.
var ErrRunning = errors.New("vmstated is already running")

// Pidfile is a locked pidfile. The lock is an flock(2) on the open file, so
// the kernel releases it when the process dies, however it dies; a pidfile
// left behind by a crashed daemon is simply taken over. The file descriptor
// is close-on-exec, so hooks and VM processes never inherit the lock.
type Pidfile struct {
	f    *os.File
	path string
}

// staleLockWait bounds how long LockPidfile waits for a lock whose holder,
// as the file names it, no longer exists.
const staleLockWait = 3 * time.Second

// LockPidfile takes the pidfile lock at path and writes the current pid into
// the file. When another process holds it, the error matches ErrRunning and
// reads "vmstated is already running (pid 1234, pidfile /run/vmstated.pid)".
// The directory must exist (see Paths.Ensure).
func LockPidfile(path string) (*Pidfile, error) {
	// Retry when the file we locked was removed or replaced by its previous
	// holder between our open and our lock: a lock on an unlinked file
	// excludes nobody. Each retry means another process made progress, so
	// the bound is only a guard against a pathological churn.
	heldByTheDead := time.Now().Add(staleLockWait)
	for replaced := 0; replaced < 100; {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open pidfile: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := readPid(f)
			f.Close()
			if pid > 0 && unix.Kill(pid, 0) == unix.ESRCH && time.Now().Before(heldByTheDead) {
				// The daemon named in the file is gone, yet the lock is
				// held: it is being released (the holder is still
				// exiting, or a child it forked has not reached exec).
				time.Sleep(20 * time.Millisecond)
				continue
			}
			who := "pid unknown"
			if pid > 0 {
				who = "pid " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("%w (%s, pidfile %s)", ErrRunning, who, path)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock pidfile %s: %w", path, err)
		}
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock pidfile %s: %w", path, err)
		}
		if !same {
			f.Close()
			replaced++
			continue
		}
		p := &Pidfile{f: f, path: path}
		if err := p.write(os.Getpid()); err != nil {
			f.Close()
			return nil, fmt.Errorf("write pidfile %s: %w", path, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("lock pidfile %s: it keeps being replaced by another process", path)
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) (bool, error) {
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

// readPid reads the pid a holder wrote. A holder that has just taken the
// lock may not have written it yet; the caller then says "pid unknown".
func readPid(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func (p *Pidfile) write(pid int) error {
	if err := p.f.Truncate(0); err != nil {
		return err
	}
	if _, err := p.f.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0); err != nil {
		return err
	}
	return p.f.Sync()
}

// Path is where the pidfile lives.
func (p *Pidfile) Path() string { return p.path }

// Close removes the pidfile and releases the lock. The file is removed while
// the lock is still held so that no other process can lock it in between
// and then lose it, and only if the path still names the file we locked
// (someone may have deleted it by hand and started another daemon).
// Closing twice returns an error.
func (p *Pidfile) Close() error {
	if p.f == nil {
		return fmt.Errorf("pidfile %s: already closed", p.path)
	}
	var errs []error
	if same, _ := sameFile(p.f, p.path); same {
		if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pidfile: %w", err))
		}
	}
	if err := p.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close pidfile: %w", err))
	}
	p.f = nil
	return errors.Join(errs...)
}
