package vmnet

import "net/netip"

// ops are the host's network calls, one implementation per system. Each
// takes what already exists as done, and a removal of what is gone as
// done, so that every step can be repeated after a daemon restart.
type ops interface {
	// bridgeExists reports why bridge cannot take taps, nil when it can.
	bridgeExists(bridge string) error
	// exists reports whether an interface of that name exists.
	exists(ifname string) bool
	createTap(tap string) error
	attach(tap, bridge string) error
	// setAddr gives the tap gw as the host's end of a /31.
	setAddr(tap string, gw netip.Addr) error
	up(tap string) error
	deleteTap(tap string) error
	// addNAT masquerades what guest sends out of any interface but tap.
	addNAT(table, tap string, guest netip.Addr) error
	delNAT(table string) error
}
