//go:build linux || freebsd

package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestGetSelf connects to a socket of its own: the peer is this process.
func TestGetSelf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	cred, err := Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	if cred.UID != uint32(os.Geteuid()) || cred.GID != uint32(os.Getegid()) {
		t.Fatalf("cred %v, want uid %d gid %d", cred, os.Geteuid(), os.Getegid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if !cred.InGroup(uint32(g)) {
			t.Errorf("group %d missing from %v", g, cred.Groups)
		}
	}
	if !cred.InGroup(uint32(os.Getegid())) {
		t.Errorf("primary group missing")
	}
}

func TestGetNotUnix(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Get(c); err == nil {
		t.Fatal("Get on TCP succeeded")
	}
}

// TestGetIDsThenGroups: GetIDs gives the same ids as Get, and AddGroups
// completes them with the groups Get would have given.
func TestGetIDsThenGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	ids, err := GetIDs(srv)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	if ids.UID != full.UID || ids.GID != full.GID || ids.PID != full.PID {
		t.Fatalf("GetIDs %v, Get %v", ids, full)
	}
	done := AddGroups(ids)
	if len(done.Groups) != len(full.Groups) {
		t.Fatalf("AddGroups gave %v, Get %v", done.Groups, full.Groups)
	}
	for i := range full.Groups {
		if done.Groups[i] != full.Groups[i] {
			t.Fatalf("AddGroups gave %v, Get %v", done.Groups, full.Groups)
		}
	}
}
