//go:build freebsd

package peercred

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fromFD reads LOCAL_PEERCRED, whose xucred holds the effective uid and
// the group list (the first entry is the effective gid).
func fromFD(fd int) (Cred, error) {
	x, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: LOCAL_PEERCRED: %w", err)
	}
	n := int(x.Ngroups)
	if n < 0 {
		n = 0
	}
	if n > len(x.Groups) {
		n = len(x.Groups)
	}
	c := Cred{UID: x.Uid, Groups: append([]uint32(nil), x.Groups[:n]...)}
	if n > 0 {
		c.GID = x.Groups[0]
	}
	return c, nil
}

// groupsOf has nothing to add: LOCAL_PEERCRED gave the groups with the
// ids.
func groupsOf(Cred) []uint32 { return nil }
