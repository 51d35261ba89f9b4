package hooks

import "os"

// fionread is FIONREAD from <sys/filio.h>: _IOR('f', 127, int).
const fionread = 0x4004667f

// pending returns how many bytes are waiting to be read from the pipe.
func pending(f *os.File) (int, error) {
	return ioctlInt(f, fionread)
}
