package server

import (
	"errors"
	"fmt"
	"io"
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
		if err := probe(path); err != nil {
			return nil, err
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

// probeWait bounds how long Listen waits for a socket that takes
// connections but does not answer to go away.
var probeWait = 10 * time.Second

// probe tells whether a daemon serves the socket at path: nil when nothing
// listens on it (the socket file is stale), ErrInUse when something
// answers HTTP on it. A socket that takes connections without answering
// is asked again until probeWait passes: right after a daemon was killed
// such a socket has been seen to take connections for a moment, and a
// new daemon that gave up at once would not start.
func probe(path string) error {
	deadline := time.Now().Add(probeWait)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil
		case err == nil:
			ok := answers(c)
			c.Close()
			if ok {
				return fmt.Errorf("%w: another vmstated answers on %s; stop it first or choose another path with -s", ErrInUse, path)
			}
		case !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("control socket: cannot tell whether %s is in use: %w", path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s takes connections but nothing answers on it; if no vmstated runs, remove it, or choose another path with -s", ErrInUse, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answers reports whether an HTTP server answers on c within a second.
func answers(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: vmstated\r\nConnection: close\r\n\r\n"); err != nil {
		return false
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "HTTP/"
}
