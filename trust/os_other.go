//go:build !linux

package trust

import "golang.org/x/sys/unix"

// dirFlags opens the directories of a walk.
const dirFlags = unix.O_RDONLY

// execByDescriptor: without /proc/self/fd, programs run by their path.
const execByDescriptor = false
