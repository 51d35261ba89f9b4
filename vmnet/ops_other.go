//go:build !linux && !freebsd

package vmnet

import (
	"errors"
	"net/netip"
)

// hostOps on other systems: the daemon sets up no networks there.
type hostOps struct{}

var errUnsupported = errors.New("the daemon sets up networks on Linux and FreeBSD only; use nic { type = tap; } and hooks")

func (hostOps) bridgeExists(string) error               { return errUnsupported }
func (hostOps) exists(string) bool                      { return false }
func (hostOps) createTap(string) error                  { return errUnsupported }
func (hostOps) attach(string, string) error             { return errUnsupported }
func (hostOps) setAddr(string, netip.Addr) error        { return errUnsupported }
func (hostOps) up(string) error                         { return errUnsupported }
func (hostOps) deleteTap(string) error                  { return nil }
func (hostOps) addNAT(string, string, netip.Addr) error { return errUnsupported }
func (hostOps) delNAT(string) error                     { return nil }
