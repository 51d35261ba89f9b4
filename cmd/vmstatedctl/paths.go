package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// defaultSocket is where the daemon listens unless told otherwise; the
// rule is the daemon's own: root uses the system run directory, everyone
// else $XDG_RUNTIME_DIR/vmstated/vmstated.sock, or a per-user directory
// under the temporary directory when XDG_RUNTIME_DIR is unset.
// VMSTATED_SOCKET overrides it.
func defaultSocket(euid int, goos string, getenv func(string) string) string {
	if s := getenv("VMSTATED_SOCKET"); s != "" {
		return s
	}
	if euid == 0 {
		if goos == "freebsd" {
			return "/var/run/vmstated.sock"
		}
		return "/run/vmstated.sock"
	}
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "vmstated", "vmstated.sock")
	}
	tmp := getenv("TMPDIR")
	if tmp == "" {
		tmp = os.TempDir()
	}
	return filepath.Join(tmp, "vmstated-"+strconv.Itoa(euid), "vmstated.sock")
}

func hostDefaultSocket() string {
	return defaultSocket(os.Geteuid(), runtime.GOOS, os.Getenv)
}
