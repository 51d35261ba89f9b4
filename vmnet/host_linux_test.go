package vmnet

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needNetns skips a test that does not run inside its own namespace.
func needNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(inNetns) == "" {
		t.Skip("makes taps and nftables tables: needs root (run inside a network namespace of its own)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed (apt-get install nftables)")
	}
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The whole life of a VM's network on the real kernel: set up, found
// again by a new manager after pieces went missing, changed, torn down to
// nothing, with the ruleset's other tables left alone.
func TestHostSetupResumeTeardown(t *testing.T) {
	needNetns(t)
	sh(t, "ip", "link", "add", "vmbr0", "type", "bridge")
	defer exec.Command("ip", "link", "del", "vmbr0").Run()
	sh(t, "nft", "add table ip other; add chain ip other post { type nat hook postrouting priority 100; }")
	defer exec.Command("nft", "delete", "table", "ip", "other").Run()

	dir := t.TempDir()
	ctx := context.Background()
	spec := Spec{VM: "web", NICs: []NIC{
		{Type: TypeBridge, Tap: "vmtest0", Bridge: "vmbr0"},
		{Type: TypeLocal, Tap: "vmtest1", NAT: true, Pool: netip.MustParsePrefix("10.200.0.0/24")},
	}}
	m := New(dir, t.Logf)
	s, err := m.Setup(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	local := s.Links[1]
	if out := sh(t, "ip", "-o", "link", "show", "master", "vmbr0"); !strings.Contains(out, "vmtest0") {
		t.Errorf("vmtest0 not on vmbr0: %s", out)
	}
	if out := sh(t, "ip", "-o", "-4", "addr", "show", "dev", "vmtest1"); !strings.Contains(out, local.Gateway.String()+"/31") {
		t.Errorf("vmtest1: %s", out)
	}
	rules := sh(t, "nft", "list", "table", "ip", local.Table)
	if !strings.Contains(rules, "ip saddr "+local.Address.String()) || !strings.Contains(rules, `oifname != "vmtest1"`) || !strings.Contains(rules, "masquerade") {
		t.Errorf("NAT table:\n%s", rules)
	}
	if out := sh(t, "ss", "-Hlun"); !strings.Contains(out, "%vmtest1:67") || strings.Count(out, ":67 ") != 1 {
		t.Errorf("DHCP listeners:\n%s", out)
	}
	m.Close() // the daemon exits: DHCP stops, the rest stays

	// Pieces went missing while no daemon ran; a new one completes them.
	sh(t, "nft", "delete", "table", "ip", local.Table)
	sh(t, "ip", "link", "set", "vmtest0", "nomaster")
	m2 := New(dir, t.Logf)
	if r, err := m2.Resume("web"); err != nil || len(r.Links) != 2 || !reflect.DeepEqual(r.Links[1], local) {
		t.Fatalf("Resume: %+v, %v", r, err)
	}
	if out := sh(t, "ip", "-o", "link", "show", "master", "vmbr0"); !strings.Contains(out, "vmtest0") {
		t.Errorf("vmtest0 not back on vmbr0: %s", out)
	}
	sh(t, "nft", "list", "table", "ip", local.Table)
	if cur := m2.Current("web"); cur == nil || len(cur.Links) != 2 {
		t.Errorf("Current after Resume: %+v", cur)
	}

	// The config dropped the bridge NIC: the next set-up removes its tap.
	if _, err := m2.Setup(ctx, Spec{VM: "web", NICs: spec.NICs[1:]}); err != nil {
		t.Fatal(err)
	}
	if exec.Command("ip", "link", "show", "vmtest0").Run() == nil {
		t.Error("vmtest0 outlived the NIC it was for")
	}

	if err := m2.Teardown(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := m2.Teardown(ctx, "web"); err != nil {
		t.Fatalf("a second teardown: %v", err)
	}
	links := sh(t, "ip", "-o", "link")
	if strings.Contains(links, "vmtest") {
		t.Errorf("taps remain:\n%s", links)
	}
	ruleset := sh(t, "nft", "list", "ruleset")
	if strings.Contains(ruleset, "vmstated") || !strings.Contains(ruleset, "table ip other") {
		t.Errorf("ruleset after the teardown:\n%s", ruleset)
	}
	if out := sh(t, "ss", "-Hlun"); strings.Contains(out, ":67 ") {
		t.Errorf("DHCP still listens:\n%s", out)
	}
	if m2.Current("web") != nil || len(m2.Known()) != 0 {
		t.Errorf("state remains: %+v, %v", m2.Current("web"), m2.Known())
	}
	// The lease stays: the next start gets the same address.
	if gw, _, _ := m2.lease("web", 1, netip.MustParsePrefix("10.200.0.0/24")); gw != local.Gateway {
		t.Errorf("lease after the teardown: %s, was %s", gw, local.Gateway)
	}
}

// A missing bridge fails the set-up with its name, and leaves nothing.
func TestHostMissingBridge(t *testing.T) {
	needNetns(t)
	m := New(t.TempDir(), t.Logf)
	_, err := m.Setup(context.Background(), Spec{VM: "db", NICs: []NIC{
		{Type: TypeLocal, Tap: "vmtest2"},
		{Type: TypeBridge, Tap: "vmtest3", Bridge: "nobr9"},
	}})
	if err == nil || !strings.Contains(err.Error(), "bridge nobr9: no such interface") {
		t.Fatalf("got %v", err)
	}
	if out := sh(t, "ip", "-o", "link"); strings.Contains(out, "vmtest") {
		t.Errorf("taps remain:\n%s", out)
	}
}

// What a local NIC's set-up and teardown cost, tap, address, DHCP socket
// and NAT table included.
func BenchmarkHostLocal(b *testing.B) {
	needNetns(b)
	m := New(b.TempDir(), b.Logf)
	spec := Spec{VM: "bench", NICs: []NIC{{Type: TypeLocal, Tap: "vmbench0", NAT: true}}}
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.Setup(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := m.Teardown(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// Two VMs whose configs name the same ifname: the one that comes second
// is refused, even while the first has only recorded the tap (it is
// being made, or the daemon died before making it) and when both start
// at once; its failed start leaves the first one's tap alone.
func TestHostSameIfname(t *testing.T) {
	needNetns(t)
	sh(t, "ip", "link", "add", "vmbr1", "type", "bridge")
	defer exec.Command("ip", "link", "del", "vmbr1").Run()
	ctx := context.Background()
	m := New(t.TempDir(), t.Logf)
	nics := []NIC{{Type: TypeBridge, Tap: "vmtest5", Bridge: "vmbr1"}}

	if err := m.save(&State{Version: stateVersion, VM: "a", Links: []Link{{Type: TypeBridge, Tap: "vmtest5", Bridge: "vmbr1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setup(ctx, Spec{VM: "b", NICs: nics}); err == nil || !strings.Contains(err.Error(), "is VM a's") {
		t.Errorf("b took the tap a recorded: %v", err)
	}
	if err := m.Teardown(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	for range 5 {
		errs := make(chan error, 2)
		for _, vm := range []string{"a", "b"} {
			go func() {
				_, err := m.Setup(ctx, Spec{VM: vm, NICs: nics})
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("two VMs set up the same tap at once: %v, %v", e1, e2)
		}
		owner, loser := "a", "b"
		if s, _ := m.Load("b"); s != nil {
			owner, loser = "b", "a"
		}
		if err := m.Teardown(ctx, loser); err != nil {
			t.Fatal(err)
		}
		if out := sh(t, "ip", "-o", "link", "show", "master", "vmbr1"); !strings.Contains(out, "vmtest5") {
			t.Fatalf("the failed start of %s removed %s's tap", loser, owner)
		}
		if err := m.Teardown(ctx, owner); err != nil {
			t.Fatal(err)
		}
	}
}

// A guest cannot send as another: a packet arriving on a local tap from
// an address not routed out of it (here another VM's) is dropped by the
// kernel's reverse-path filter, which counts it.
func TestHostNoSpoofing(t *testing.T) {
	needNetns(t)
	ctx := context.Background()
	m := New(t.TempDir(), t.Logf)
	pool := netip.MustParsePrefix("10.201.0.0/24")
	a, err := m.Setup(ctx, Spec{VM: "a", NICs: []NIC{{Type: TypeLocal, Tap: "vmtest6", Pool: pool}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown(ctx, "a")
	b, err := m.Setup(ctx, Spec{VM: "b", NICs: []NIC{{Type: TypeLocal, Tap: "vmtest7", Pool: pool}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown(ctx, "b")
	m.stopServing("vmtest6") // the guest's side of the tap is opened below

	guest := openTap(t, "vmtest6")
	defer guest.Close()
	mac, err := net.ParseMAC(strings.TrimSpace(sh(t, "cat", "/sys/class/net/vmtest6/address")))
	if err != nil {
		t.Fatal(err)
	}
	before := rpFiltered(t)
	frame := icmpEcho(mac, b.Links[0].Address, a.Links[0].Gateway)
	deadline := time.Now().Add(10 * time.Second)
	for rpFiltered(t) == before {
		if time.Now().After(deadline) {
			t.Fatalf("a packet from %s (b's address) arriving on a's tap was not dropped by the reverse-path filter", b.Links[0].Address)
		}
		if _, err := guest.Write(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openTap attaches to a tap as its guest would: what is written is what
// the guest sends.
func openTap(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
		f.Close()
		t.Fatalf("attaching to %s: %v", name, err)
	}
	return f
}

// rpFiltered is the namespace's count of packets the reverse-path filter
// dropped.
func rpFiltered(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, k := range keys {
			if k == "IPReversePathFilter" && j < len(vals) {
				n, _ := strconv.Atoi(vals[j])
				return n
			}
		}
	}
	t.Fatal("/proc/net/netstat has no IPReversePathFilter counter")
	return 0
}

// icmpEcho is an Ethernet frame to dst (MAC) holding an ICMP echo
// request from src to to.
func icmpEcho(dst net.HardwareAddr, src, to netip.Addr) []byte {
	sum := func(b []byte) uint16 {
		var s uint32
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
		return ^uint16(s)
	}
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'v', 'm', 's', 't'}
	binary.BigEndian.PutUint16(icmp[2:], sum(icmp))
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(icmp)))
	s4, t4 := src.As4(), to.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], t4[:])
	binary.BigEndian.PutUint16(ip[10:], sum(ip))
	frame := append(append([]byte{}, dst...), 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00)
	return append(append(frame, ip...), icmp...)
}

// A teardown removes taps only: an interface of another kind (here a
// bridge) that took the name of a tap recorded for a VM, after the tap
// went, stays.
func TestHostTeardownLeavesOthers(t *testing.T) {
	needNetns(t)
	sh(t, "ip", "link", "add", "vmtest8", "type", "bridge")
	defer exec.Command("ip", "link", "del", "vmtest8").Run()
	m := New(t.TempDir(), t.Logf)
	if err := m.save(&State{Version: stateVersion, VM: "x", Links: []Link{{Type: TypeBridge, Tap: "vmtest8", Bridge: "vmbr9"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "link", "show", "vmtest8").Run(); err != nil {
		t.Error("the teardown removed a bridge that had taken a tap's name")
	}
	if s, err := m.Load("x"); s != nil || err != nil {
		t.Errorf("state after the teardown: %+v, %v", s, err)
	}
}
