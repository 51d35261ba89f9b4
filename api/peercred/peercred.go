// Package peercred finds out who is on the other end of a unix socket
// connection: the peer's user id, group id and supplementary groups, as the
// kernel recorded them (SO_PEERCRED on Linux, LOCAL_PEERCRED on FreeBSD).
//
// The kernel vouches for these values; nothing the peer sends can change
// them, which is what makes them fit for authorization.
package peercred

import (
	"errors"
	"fmt"
	"net"
)

// ErrUnsupported: the connection is not a unix socket, or the platform
// cannot report peer credentials.
var ErrUnsupported = errors.New("peer credentials are not available")

// Cred is what the kernel says about a peer.
type Cred struct {
	// UID is the peer's effective user id when it connected.
	UID uint32
	// GID is the peer's effective group id when it connected.
	GID uint32
	// PID is the peer's process id (0 when the platform does not say).
	PID int
	// Groups are the peer's supplementary groups, GID included. Nil when
	// they could not be learned; then only GID counts.
	Groups []uint32
}

// InGroup reports whether gid is the peer's group or one of its
// supplementary groups.
func (c Cred) InGroup(gid uint32) bool {
	if c.GID == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

func (c Cred) String() string {
	return fmt.Sprintf("uid %d gid %d pid %d", c.UID, c.GID, c.PID)
}

// Get returns the credentials of the peer of conn, which must be a
// *net.UnixConn, its groups included.
func Get(conn net.Conn) (Cred, error) {
	c, err := GetIDs(conn)
	if err != nil {
		return Cred{}, err
	}
	return AddGroups(c), nil
}

// GetIDs returns the peer's uid, gid and pid as Get does, but leaves out
// the supplementary groups where learning them costs more than asking the
// kernel once (Linux): for decisions taken on every connection, such as
// whether to accept it at all. AddGroups completes it.
func GetIDs(conn net.Conn) (Cred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("%w: %T is not a unix socket connection", ErrUnsupported, conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred Cred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) { cred, gerr = fromFD(int(fd)) }); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if gerr != nil {
		return Cred{}, gerr
	}
	return cred, nil
}

// AddGroups returns c with its supplementary groups, when GetIDs left
// them out and they can be learned; otherwise c as it is.
func AddGroups(c Cred) Cred {
	if c.Groups == nil {
		c.Groups = groupsOf(c)
	}
	return c
}
