//go:build linux

package peercred

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// fromFD reads SO_PEERCRED. Linux reports uid, gid and pid there; the
// supplementary groups are not in it (see groupsOf).
func fromFD(fd int) (Cred, error) {
	u, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: SO_PEERCRED: %w", err)
	}
	return Cred{UID: u.Uid, GID: u.Gid, PID: int(u.Pid)}, nil
}

// groupsOf reads the Groups line of /proc/PID/status, trusted only while
// that process still has the peer's uid (a pid reused by someone else is
// ignored, leaving only the primary group).
func groupsOf(c Cred) []uint32 {
	if c.PID <= 0 {
		return nil
	}
	return procGroups(c.PID, c.UID)
}

// procGroups returns the supplementary groups of pid, or nil when the
// process is gone or no longer runs as uid.
func procGroups(pid int, uid uint32) []uint32 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	var groups []uint32
	uidOK := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		switch string(key) {
		case "Uid":
			// real, effective, saved, filesystem
			f := bytes.Fields(val)
			if len(f) >= 2 {
				if e, err := strconv.ParseUint(string(f[1]), 10, 32); err == nil && uint32(e) == uid {
					uidOK = true
				}
			}
		case "Groups":
			groups = []uint32{}
			for _, f := range bytes.Fields(val) {
				if g, err := strconv.ParseUint(string(f), 10, 32); err == nil {
					groups = append(groups, uint32(g))
				}
			}
		}
	}
	if !uidOK {
		return nil
	}
	return groups
}
