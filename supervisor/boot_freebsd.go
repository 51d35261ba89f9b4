package supervisor

import (
	"fmt"

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
