package vmnet

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// listenDHCP opens the DHCP server's socket on tap alone: SO_BINDTODEVICE
// makes the kernel deliver only what arrives there, and send the
// broadcast answers out of it.
func listenDHCP(tap string) (*net.UDPConn, error) {
	return server4.NewIPv4UDPConn(tap, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort})
}
