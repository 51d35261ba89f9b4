package hooks

import (
	"os"

	"golang.org/x/sys/unix"
)

// pending returns how many bytes are waiting to be read from the pipe.
func pending(f *os.File) (int, error) {
	return ioctlInt(f, unix.TIOCINQ) // the same request as FIONREAD
}
