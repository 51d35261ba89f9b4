package vmnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostOps are Linux's: rtnetlink for links and addresses, nftables'
// netlink API for NAT.
type hostOps struct{}

func (hostOps) bridgeExists(bridge string) error {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return errors.New("no such interface")
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("is a %s interface, not a bridge", l.Type())
	}
	return nil
}

func (hostOps) exists(ifname string) bool {
	_, err := netlink.LinkByName(ifname)
	return err == nil
}

func (hostOps) createTap(tap string) error {
	if l, err := netlink.LinkByName(tap); err == nil {
		if l.Type() != "tuntap" {
			return fmt.Errorf("an interface %s exists and is a %s, not a tap; remove it or choose another ifname", tap, l.Type())
		}
		return nil
	}
	// Persistent, so that it outlives the daemon and QEMU opens it by
	// name; the same flags as QEMU's own open, so QEMU can attach.
	t := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: tap},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
	}
	return netlink.LinkAdd(t)
}

func (hostOps) attach(tap, bridge string) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return err
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: no such interface", bridge)
	}
	if l.Attrs().MasterIndex == br.Attrs().Index {
		return nil
	}
	return netlink.LinkSetMaster(l, br)
}

func (hostOps) setAddr(tap string, gw netip.Addr) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(gw.String() + "/31")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	// Strict reverse-path filtering: what arrives on the tap must come
	// from an address routed out of it (the guest's end of the /31), so
	// a guest cannot send as another VM or as any other host. DHCP's
	// 0.0.0.0 is not checked by it.
	p := "/proc/sys/net/ipv4/conf/" + tap + "/rp_filter"
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turning on reverse-path filtering (%s): %w", p, err)
	}
	return nil
}

func (hostOps) up(tap string) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func (hostOps) deleteTap(tap string) error {
	l, err := netlink.LinkByName(tap)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Type() != "tuntap" {
		// Not the tap that was made under that name (it went, and
		// something else took the name): not the daemon's to remove.
		return nil
	}
	return netlink.LinkDel(l)
}

func (hostOps) addNAT(table, tap string, guest netip.Addr) error {
	// Forwarding is what NAT is for; it is left on at teardown, since
	// other things on the host may rely on it too.
	if err := enableForwarding(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if t, _ := c.ListTableOfFamily(table, nftables.TableFamilyIPv4); t != nil {
		return nil
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: table})
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, tap)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		// ip saddr == guest
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: guest.AsSlice()},
		// oifname != tap
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname},
		&expr.Masq{},
	}})
	return c.Flush()
}

func (hostOps) delNAT(table string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if t, _ := c.ListTableOfFamily(table, nftables.TableFamilyIPv4); t == nil {
		return nil
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: table})
	return c.Flush()
}

func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turning on IPv4 forwarding (%s): %w", p, err)
	}
	return nil
}
