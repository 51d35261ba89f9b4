package supervisor

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// bootID identifies the current boot of the host: its boot time.
func bootID() (string, error) {
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%06d", tv.Sec, tv.Usec), nil
}

func signalZero(pid int) error { return syscall.Kill(pid, 0) }
