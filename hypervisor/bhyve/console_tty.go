//go:build freebsd || linux

package bhyve

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openNMDM opens the daemon's side of a null-modem pair (making the pair
// if bhyve has not opened its side yet), non-blocking so that reads and
// writes can be bounded, in raw mode: the guest's bytes come through as
// they are and nothing is echoed back to it. On Linux, which has no such
// pairs, it opens whatever terminal path names, for tests.
func openNMDM(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bhyve: console = nmdm: open %s (is the nmdm module loaded? kldload nmdm): %w", path, err)
	}
	t, err := unix.IoctlGetTermios(fd, getTermios)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8 | unix.CLOCAL
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		err = unix.IoctlSetTermios(fd, setTermios, t)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bhyve: console = nmdm: put %s in raw mode: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
