package vmnet

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Leases: the same /31 for the same NIC every time, also for a new
// manager (a daemon restart); different NICs never share or overlap,
// whatever their pools; a full pool says so.
func TestLeases(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, nil)
	gw, guest, err := m.lease("web", 0, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if !DefaultPool.Contains(gw) || guest != gw.Next() || gw.As4()[3]%2 != 0 {
		t.Errorf("web/0: gateway %s, guest %s; want an even gateway and the next address, in %s", gw, guest, DefaultPool)
	}
	if g2, _, _ := New(dir, nil).lease("web", 0, netip.Prefix{}); g2 != gw {
		t.Errorf("web/0 got %s from a new manager, %s before", g2, gw)
	}

	small := netip.MustParsePrefix("10.1.0.0/30") // two /31s
	a, _, err1 := m.lease("a", 0, small)
	b, _, err2 := m.lease("b", 0, small)
	_, _, err3 := m.lease("c", 0, small)
	if err1 != nil || err2 != nil || a == b || !small.Contains(a) || !small.Contains(b) {
		t.Errorf("two NICs in a /30: %s %v, %s %v", a, err1, b, err2)
	}
	if err3 == nil {
		t.Error("a third /31 from a /30 was handed out")
	}
	// A pool overlapping another's leases skips them.
	wide := netip.MustParsePrefix("10.1.0.0/29")
	for i := range 2 {
		g, _, err := m.lease("d", i, wide)
		if err != nil || g == a || g == b {
			t.Errorf("d/%d in %s got %s (%v); a and b hold %s and %s", i, wide, g, err, a, b)
		}
	}
	if _, _, err := m.lease("e", 0, netip.MustParsePrefix("10.1.0.1/32")); err == nil {
		t.Error("a /32 pool was accepted")
	}
}

// The DHCP server offers and acknowledges the guest's address with the
// gateway, name servers and host name, refuses another address, and
// ignores what is not for it.
func TestDHCPReply(t *testing.T) {
	l := Link{Tap: "vmtest", Gateway: netip.MustParseAddr("100.64.0.10"), Address: netip.MustParseAddr("100.64.0.11"),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Hostname: "web"}
	s := &dhcpServer{link: l}
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	disc, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	offer := s.reply(disc)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("discover answered with %v", offer)
	}
	if !offer.YourIPAddr.Equal(net.ParseIP("100.64.0.11")) || !offer.ServerIdentifier().Equal(net.ParseIP("100.64.0.10")) ||
		len(offer.Router()) != 1 || !offer.Router()[0].Equal(net.ParseIP("100.64.0.10")) ||
		len(offer.DNS()) != 1 || !offer.DNS()[0].Equal(net.ParseIP("192.0.2.53")) ||
		offer.HostName() != "web" || offer.SubnetMask().String() != "fffffffe" {
		t.Errorf("offer: %s", offer.Summary())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	if ack := s.reply(req); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Errorf("request answered with %v", ack)
	}
	other, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("100.64.0.99"))))
	if nak := s.reply(other); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request of another address answered with %v", nak)
	}
	elsewhere, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1"))))
	if r := s.reply(elsewhere); r != nil {
		t.Errorf("a request for another server was answered: %s", r.Summary())
	}
	offer.OpCode = dhcpv4.OpcodeBootReply
	if r := s.reply(offer); r != nil {
		t.Errorf("a reply was answered: %s", r.Summary())
	}
}

// TapName fits interface names and tells VMs and NICs apart.
func TestTapName(t *testing.T) {
	long := "a-very-long-vm-name-that-goes-on-and-on-for-sixty-three-chars-x"
	seen := map[string]bool{}
	for _, vm := range []string{"web", "db", long} {
		for i := range 3 {
			n := TapName(vm, i)
			if len(n) > 15 || seen[n] {
				t.Errorf("TapName(%s, %d) = %q: too long or taken", vm, i, n)
			}
			seen[n] = true
		}
	}
}

// Teardown of a VM with nothing set up is no error and makes nothing.
func TestTeardownNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "network")
	m := New(dir, nil)
	if err := m.Teardown(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Load("web"); s != nil || err != nil {
		t.Errorf("Load: %v, %v", s, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the state directory was made: %v", err)
	}
}

// Release frees the leases of the VMs it is told are gone, and only
// theirs: a full pool has room again, the others keep their /31s.
func TestRelease(t *testing.T) {
	m := New(t.TempDir(), nil)
	small := netip.MustParsePrefix("10.1.0.0/30") // two /31s
	a, _, _ := m.lease("a", 0, small)
	b, _, _ := m.lease("b", 0, small)
	if _, _, err := m.lease("c", 0, small); err == nil {
		t.Fatal("a third /31 from a /30 was handed out")
	}
	freed, err := m.Release(func(vm string) bool { return vm == "a" || vm == "x" })
	if err != nil || len(freed) != 1 || freed[0] != "a" {
		t.Fatalf("Release: %v, %v; want [a]", freed, err)
	}
	if c, _, err := m.lease("c", 0, small); err != nil || c != a {
		t.Errorf("c after a's release: %s, %v; want a's %s", c, err, a)
	}
	if b2, _, _ := New(m.dir, nil).lease("b", 0, small); b2 != b {
		t.Errorf("b's lease changed to %s, was %s", b2, b)
	}
	if freed, err := m.Release(func(string) bool { return false }); err != nil || freed != nil {
		t.Errorf("a release of nothing: %v, %v", freed, err)
	}
}

// A state file that cannot be used (torn, of another version, another
// VM's) is an error that says what to do, for the set-up and the
// teardown alike, and nothing is made or removed.
func TestUnusableState(t *testing.T) {
	for _, text := range []string{"{", `{"version": 9, "vm": "web"}`, `{"version": 1, "vm": "db", "links": [{"type": "bridge", "tap": "eth0"}]}`} {
		m := New(t.TempDir(), nil)
		if err := os.WriteFile(m.statePath("web"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		// A bridge that does not exist: should the state be taken, nothing
		// is made either.
		_, err := m.Setup(t.Context(), Spec{VM: "web", NICs: []NIC{{Type: TypeBridge, Tap: "vmtest9", Bridge: "nobr-test"}}})
		if err == nil || !strings.Contains(err.Error(), "remove what is left of it") || !strings.Contains(err.Error(), TapName("web", 0)[:10]) {
			t.Errorf("set-up with a state file %s: %v", text, err)
		}
		if err := m.Teardown(t.Context(), "web"); err == nil || !strings.Contains(err.Error(), "then the file") {
			t.Errorf("teardown with a state file %s: %v", text, err)
		}
	}
}
