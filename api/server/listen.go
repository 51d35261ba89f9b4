package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketMode is the mode of the control socket. Anyone on the host may
// connect; what a caller may see and do is decided per request from its
// peer credentials (package api, Authorization). A mode or group on the
// socket could only add a coarser second gate, and would keep a VM's owner
// out unless they also were in the socket's group. A daemon run by an
// ordinary user keeps its socket under its own runtime directory (mode
// 0700), which nobody else can enter anyway.
const SocketMode os.FileMode = 0o666

// ErrInUse: another process answers on the socket path.
var ErrInUse = errors.New("control socket in use")

// Listen binds the control socket at path with SocketMode. A socket file
// left behind by a daemon that died is removed first, but only when
// nothing answers on it; a file at path that is not a socket is never
// removed. The parent directory is created (0755) when missing.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("control socket: %s exists and is not a socket; remove it or choose another path with -s", path)
		}
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: another vmstated answers on %s; stop it first or choose another path with -s", ErrInUse, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("control socket: cannot tell whether %s is in use: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("control socket: removing the stale %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}
