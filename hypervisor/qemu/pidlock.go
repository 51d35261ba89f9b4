package qemu

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning means a QEMU for the same run directory still runs.
var ErrAlreadyRunning = errors.New("a QEMU for this VM is already running")

// checkPidfile refuses to start when a live QEMU holds the lock QEMU
// takes on its pidfile: a second QEMU would share the first one's disks,
// and removing its sockets would orphan it.
func checkPidfile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("qemu: checking pidfile: %w", err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return fmt.Errorf("qemu: checking the lock on %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return nil
	}
	return fmt.Errorf("qemu: pid %d holds %s: %w; recover or stop it first", lk.Pid, path, ErrAlreadyRunning)
}
