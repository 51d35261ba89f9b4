package vmnet

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// leaseTime is what the guest is told; the address never changes, so a
// long lease only spares it renewals while the daemon is down.
const leaseTime = 24 * time.Hour

// dhcpServer answers DHCP on one tap, and only there: its socket is bound
// to the tap's device, so nothing listens on any other interface. It
// offers one address, the guest's end of the tap's /31.
type dhcpServer struct {
	link Link
	conn *net.UDPConn
	done chan struct{}
}

// serve starts l's DHCP server unless one runs.
func (m *Manager) serve(l Link) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.servers[l.Tap]; ok {
		return nil
	}
	conn, err := listenDHCP(l.Tap)
	if err != nil {
		return fmt.Errorf("DHCP server on %s: %w", l.Tap, err)
	}
	srv := &dhcpServer{link: l, conn: conn, done: make(chan struct{})}
	m.servers[l.Tap] = srv
	go srv.run(m.logf)
	return nil
}

func (m *Manager) stopServing(tap string) {
	m.mu.Lock()
	srv := m.servers[tap]
	delete(m.servers, tap)
	m.mu.Unlock()
	if srv != nil {
		srv.close()
	}
}

func (s *dhcpServer) close() {
	s.conn.Close()
	<-s.done
}

// run answers requests one at a time until the socket is closed: a guest
// that floods its tap gets answers no faster than they are sent, and
// costs no goroutine per packet.
func (s *dhcpServer) run(logf func(string, ...any)) {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logf("DHCP server on %s stopped: %v", s.link.Tap, err)
			}
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		resp := s.reply(req)
		if resp == nil {
			continue
		}
		// The guest has no address yet, and no ARP entry: the answer is
		// broadcast on the tap (the socket is bound to it).
		if _, err := s.conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
			logf("DHCP server on %s: answering: %v", s.link.Tap, err)
		}
	}
}

// reply is the answer to req: an offer for a discover, an ack for a
// request of the guest's address, a nak for a request of any other, and
// nothing for the rest.
func (s *dhcpServer) reply(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil
	}
	l := s.link
	guest, gw := net.IP(l.Address.AsSlice()), net.IP(l.Gateway.AsSlice())
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(gw) {
			return nil // the guest chose another server's offer
		}
		want := req.RequestedIPAddress()
		if want == nil {
			want = req.ClientIPAddr
		}
		typ = dhcpv4.MessageTypeAck
		if !want.Equal(guest) {
			typ = dhcpv4.MessageTypeNak
		}
	default:
		return nil
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(gw),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw)),
	}
	if typ != dhcpv4.MessageTypeNak {
		dns := make([]net.IP, len(l.DNS))
		for i, a := range l.DNS {
			dns[i] = a.AsSlice()
		}
		mods = append(mods,
			dhcpv4.WithYourIP(guest),
			dhcpv4.WithNetmask(net.CIDRMask(31, 32)),
			dhcpv4.WithRouter(gw),
			dhcpv4.WithDNS(dns...),
			dhcpv4.WithLeaseTime(uint32(leaseTime/time.Second)),
			dhcpv4.WithOption(dhcpv4.OptHostName(l.Hostname)),
		)
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil
	}
	return resp
}
