//go:build !linux

package vmnet

import (
	"errors"
	"net"
)

// listenDHCP: outside Linux a socket cannot be bound to one interface
// (FreeBSD's IP_RECVIF only tells where a packet came from, and a
// broadcast answer would leave by the default route), so the server
// would listen and answer on every interface. It is not offered there.
func listenDHCP(string) (*net.UDPConn, error) {
	return nil, errors.New("the built-in DHCP server of type local runs on Linux only, where it can be bound to the tap alone; use nic { type = bridge; } with a DHCP server of the host's")
}
