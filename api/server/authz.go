package server

import (
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/vmstated/vmstated/supervisor"
)

// Authorization. Root and the daemon's own user may do everything. A VM's
// owner (a user name or uid) and the members of its group (a group name or
// gid) may see and act on that VM. Everyone else neither sees it in lists
// nor in the event stream, and gets 403 when naming it. Reload acts on
// every VM, so only root and the daemon's user may ask for it.
//
// Group membership is what the kernel says about the peer: its primary
// group and supplementary groups (see package peercred). Only when the
// supplementary groups cannot be read does the group database decide.

func (s *Server) isAdmin(p peer) bool {
	return p.known && (p.cred.UID == 0 || p.cred.UID == s.adminUID)
}

// mayAct reports whether p may see and act on the VM st describes.
func (s *Server) mayAct(p peer, st supervisor.Status) bool {
	if s.isAdmin(p) {
		return true
	}
	if !p.known {
		return false
	}
	if st.Owner != "" {
		if uid, ok := s.ids.uid(st.Owner); ok && uid == p.cred.UID {
			return true
		}
	}
	if st.Group != "" {
		if gid, ok := s.ids.gid(st.Group); ok {
			if p.cred.InGroup(gid) {
				return true
			}
			if p.cred.Groups == nil {
				for _, g := range s.ids.groupsOf(p.cred.UID) {
					if g == gid {
						return true
					}
				}
			}
		}
	}
	return false
}

// idCacheTTL is how long a name lookup is reused: long enough that a busy
// event stream does not read the user database per event, short enough
// that a new group member is let in soon.
const idCacheTTL = 10 * time.Second

// idCache remembers user and group lookups for a short while.
type idCache struct {
	ttl    time.Duration
	mu     sync.Mutex
	users  map[string]idEntry
	groups map[string]idEntry
	member map[uint32]groupsEntry
}

type idEntry struct {
	id  uint32
	ok  bool
	exp time.Time
}

type groupsEntry struct {
	gids []uint32
	exp  time.Time
}

func newIDCache(ttl time.Duration) *idCache {
	return &idCache{ttl: ttl, users: map[string]idEntry{}, groups: map[string]idEntry{}, member: map[uint32]groupsEntry{}}
}

// uid resolves a user name or a numeric uid.
func (c *idCache) uid(name string) (uint32, bool) {
	return c.resolve(c.users, name, func(n string) (string, error) {
		u, err := user.Lookup(n)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
}

// gid resolves a group name or a numeric gid.
func (c *idCache) gid(name string) (uint32, bool) {
	return c.resolve(c.groups, name, func(n string) (string, error) {
		g, err := user.LookupGroup(n)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
}

func (c *idCache) resolve(m map[string]idEntry, name string, lookup func(string) (string, error)) (uint32, bool) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), true
	}
	now := time.Now()
	c.mu.Lock()
	e, hit := m[name]
	c.mu.Unlock()
	if hit && now.Before(e.exp) {
		return e.id, e.ok
	}
	e = idEntry{exp: now.Add(c.ttl)}
	if s, err := lookup(name); err == nil {
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			e.id, e.ok = uint32(n), true
		}
	}
	c.mu.Lock()
	m[name] = e
	c.mu.Unlock()
	return e.id, e.ok
}

// groupsOf returns the groups the group database gives uid.
func (c *idCache) groupsOf(uid uint32) []uint32 {
	now := time.Now()
	c.mu.Lock()
	e, hit := c.member[uid]
	c.mu.Unlock()
	if hit && now.Before(e.exp) {
		return e.gids
	}
	e = groupsEntry{exp: now.Add(c.ttl)}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, s := range ids {
				if n, err := strconv.ParseUint(s, 10, 32); err == nil {
					e.gids = append(e.gids, uint32(n))
				}
			}
		}
	}
	c.mu.Lock()
	c.member[uid] = e
	c.mu.Unlock()
	return e.gids
}
