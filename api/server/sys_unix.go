//go:build unix

package server

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// descriptorLimit is the process's soft limit on open files. The Go
// runtime has raised it to the hard limit at start (and gives child
// processes the original back), so nothing needs raising here.
func descriptorLimit() uint64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return fallbackDescriptorLimit
	}
	return uint64(lim.Cur)
}

// readPending reads into buf what has already arrived on c, without
// waiting, and returns how much that was.
func readPending(c net.Conn, buf []byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Read(func(fd uintptr) bool {
		if k, err := unix.Read(int(fd), buf); err == nil && k > 0 {
			n = k
		}
		return true // done, whether or not there was anything
	})
	return n
}
