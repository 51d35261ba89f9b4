package main

import (
	"os"
	"runtime"

	"github.com/vmstated/vmstated/daemon"
)

// defaultPaths are the daemon's own defaults for this user, so that
// vmstatedctl finds the socket (and check the config root) of a daemon
// started without flags. VMSTATED_SOCKET overrides the socket.
func defaultPaths(euid int, goos string, getenv func(string) string) daemon.Paths {
	p := daemon.DefaultPaths(euid, goos, getenv)
	if s := getenv("VMSTATED_SOCKET"); s != "" {
		p.Socket = s
	}
	return p
}

func hostDefaultPaths() daemon.Paths {
	return defaultPaths(os.Geteuid(), runtime.GOOS, os.Getenv)
}

func hostDefaultSocket() string { return hostDefaultPaths().Socket }
