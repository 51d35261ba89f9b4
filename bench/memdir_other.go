//go:build !linux

package bench

import "os"

// memDir makes a temporary directory; on Linux it is on a memory file
// system, as a host's run directory is.
func memDir(pattern string) (string, error) { return os.MkdirTemp("", pattern) }
