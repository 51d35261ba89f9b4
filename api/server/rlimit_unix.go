//go:build unix

package server

import "golang.org/x/sys/unix"

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
