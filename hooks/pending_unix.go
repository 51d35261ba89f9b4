//go:build linux || freebsd

package hooks

import (
	"os"

	"golang.org/x/sys/unix"
)

// ioctlInt runs an int-valued ioctl on f without taking the descriptor out
// of non-blocking mode (File.Fd would), so a blocked Read can still be
// woken by a deadline.
func ioctlInt(f *os.File, req uint) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetInt(int(fd), req)
	}); err != nil {
		return 0, err
	}
	return n, ierr
}
