//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/internal/testguest"
	"github.com/vmstated/vmstated/vmnet"
)

// netns is a network namespace a test made; it goes, with everything in
// it, when the test ends.
type netns string

// newNetns makes a network namespace for the test (root only) with its
// loopback up. Registered before newEnv, its removal runs after the
// env's cleanup has ended the daemons and guests.
func newNetns(t *testing.T, short string) netns {
	t.Helper()
	name := "vmsd-" + short + "-" + runID
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns := netns(name)
	ns.run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// run runs a command inside the namespace and returns its output; a
// failure fails the test.
func (ns netns) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ns.try(args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

func (ns netns) try(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", string(ns)}, args...)...).CombinedOutput()
	return string(out), err
}

// needNetTools skips a test that cannot make namespaces, run QEMU or
// read nftables here.
func needNetTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces, taps and nftables need root")
	}
	for _, tool := range []string{"ip", "nft", "ss", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install iproute2 nftables qemu-system-x86)", tool)
		}
	}
	if testing.Short() {
		t.Skip("boots Linux guests; skipped with -short")
	}
}

// netGuest is the body of a VM config that boots the networked test guest
// with nics and extra kernel arguments.
func netGuest(kernel, initrd, nics, args string) string {
	return fmt.Sprintf(`    hypervisor = qemu;
    memory = 128;
    stop_timeout = 1;
    qemu {
        accel = tcg;
        kernel = %q;
        initrd = %q;
        append = "console=ttyS0 quiet %s";
%s
    }
`, kernel, initrd, args, nics)
}

var addressLine = regexp.MustCompile(testguest.AddressLine + ` (\S+) gw (\S+) dns (.*) host (\S+)`)

// guestAddress waits until the guest printed its address and returns the
// last one it printed: address/bits, gateway, name servers, host name.
func (e *env) guestAddress(vm string, nth int) []string {
	e.t.Helper()
	var m [][]string
	waitUntil(e.t, vm+"'s address on its console", func() bool {
		m = addressLine.FindAllStringSubmatch(e.readLog(vm), -1)
		return len(m) >= nth
	})
	return m[nth-1][1:]
}

// A local VM, as vmctl start -L: the daemon (in a namespace of its own)
// makes a tap with a /31 from the pool, answers the guest's DHCP on that
// tap alone, and masquerades for it; the guest reaches an address in a
// second namespace behind the host. Its address shows in status, stays
// the same across a daemon SIGKILL and a restart of the VM, and nothing of
// it remains after the stop.
func TestNetworkLocal(t *testing.T) {
	needNetTools(t)
	t.Parallel()
	kernel, initrd := testguest.Net(t)
	host, outside := newNetns(t, "lh"), newNetns(t, "lo")
	// outside is reachable from host over a veth pair, and knows no route
	// to the pool: only masquerading gets the guest's pings answered.
	veth := "vo" + runID
	host.run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p", "netns", string(outside))
	host.run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", veth)
	host.run(t, "ip", "link", "set", veth, "up")
	outside.run(t, "ip", "addr", "add", "10.99.0.2/24", "dev", veth+"p")
	outside.run(t, "ip", "link", "set", veth+"p", "up")

	// Rules of the host's own, which the daemon must leave alone.
	host.run(t, "nft", "add table ip hostnat; add chain ip hostnat post { type nat hook postrouting priority 100; }; add rule ip hostnat post ip saddr 10.55.0.0/16 masquerade")

	e := newEnv(t)
	e.netns = string(host)
	vm := e.addVM("local", netGuest(kernel, initrd, `        nic { type = local; nat = true; pool = 100.64.8.0/24; dns = [ "192.0.2.53" ]; }`, "vmstated.ping=10.99.0.2"))
	e.writeFile(e.root+"/"+vm+"/stop_network", "#!/bin/sh\nenv > \"$VMSTATED_CONFIG_DIR/../../work/$1.stop_network.env\"\nip link show \"$VMSTATED_NIC0_TAP\" >/dev/null\n")
	if err := os.Chmod(e.root+"/"+vm+"/stop_network", 0o755); err != nil {
		t.Fatal(err)
	}

	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	if len(st.Networks) != 1 {
		t.Fatalf("status shows networks %+v, want one", st.Networks)
	}
	n := st.Networks[0]
	if n.Type != "local" || !n.NAT || !strings.HasPrefix(n.Address, "100.64.8.") || n.Tap == "" {
		t.Fatalf("status network: %+v", n)
	}
	got := e.guestAddress(vm, 1)
	if got[0] != n.Address+"/31" || got[1] != n.Gateway || strings.TrimSpace(got[2]) != "192.0.2.53" || got[3] != vm {
		t.Errorf("guest configured %v; status says %+v", got, n)
	}
	e.waitLog(vm, testguest.GatewayLine)
	e.waitLog(vm, testguest.PingLine+" 10.99.0.2")

	env := e.hookEnv(vm, "start_network")
	if env["VMSTATED_TAPS"] != n.Tap || env["VMSTATED_NIC0_ADDRESS"] != n.Address {
		t.Errorf("start_network hook saw VMSTATED_TAPS=%q VMSTATED_NIC0_ADDRESS=%q; want %s, %s",
			env["VMSTATED_TAPS"], env["VMSTATED_NIC0_ADDRESS"], n.Tap, n.Address)
	}
	index := host.run(t, "cat", "/sys/class/net/"+n.Tap+"/ifindex")
	if out := host.run(t, "ip", "-4", "addr", "show", "dev", n.Tap); !strings.Contains(out, n.Gateway+"/31") {
		t.Errorf("tap %s has not the gateway %s/31:\n%s", n.Tap, n.Gateway, out)
	}
	// DHCP is served on the tap alone.
	listeners := func() []string {
		var out []string
		for _, l := range strings.Split(host.run(t, "ss", "-Hlun"), "\n") {
			if strings.Contains(l, ":67 ") {
				out = append(out, l)
			}
		}
		return out
	}
	if l := listeners(); len(l) != 1 || !strings.Contains(l[0], "%"+n.Tap+":67") {
		t.Errorf("DHCP listeners %q, want one bound to %s", l, n.Tap)
	}
	if out := host.run(t, "nft", "list", "ruleset"); !strings.Contains(out, "masquerade") || !strings.Contains(out, n.Address) {
		t.Errorf("no masquerading for %s:\n%s", n.Address, out)
	}

	// The daemon is killed and a new one takes over: the same tap (not
	// made again), the same address, DHCP served again.
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	d = e.start()
	st = d.waitUp(vm)
	if len(st.Networks) != 1 || st.Networks[0] != n {
		t.Errorf("after the daemon's restart status shows %+v, want %+v", st.Networks, n)
	}
	if again := host.run(t, "cat", "/sys/class/net/"+n.Tap+"/ifindex"); again != index {
		t.Errorf("tap %s was made again (ifindex %s, was %s)", n.Tap, strings.TrimSpace(again), strings.TrimSpace(index))
	}
	waitUntil(t, "the DHCP server on "+n.Tap+" again", func() bool { return len(listeners()) == 1 })

	// A restart of the VM: the same address again.
	d.do(vm, api.ActionRestart)
	waitUntil(t, "the guest's second boot", func() bool {
		return strings.Count(e.readLog(vm), testguest.AddressLine) >= 2
	})
	if got := e.guestAddress(vm, 2); got[0] != n.Address+"/31" {
		t.Errorf("after a restart the guest got %s, before %s/31", got[0], n.Address)
	}

	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	st = d.waitStatus(vm, "stopped and settled", func(s api.Status) bool {
		return s.State == api.StateStopped && s.Hook == ""
	})
	if len(st.Networks) != 0 {
		t.Errorf("a stopped VM shows networks %+v", st.Networks)
	}
	if env := e.hookEnv(vm, "stop_network"); env["VMSTATED_NIC0_TAP"] != n.Tap {
		t.Errorf("stop_network hook saw VMSTATED_NIC0_TAP=%q, want %s", env["VMSTATED_NIC0_TAP"], n.Tap)
	}
	checkNetGone(t, host, n)
	if l := listeners(); len(l) != 0 {
		t.Errorf("DHCP still listens after the stop: %q", l)
	}
	if out := host.run(t, "nft", "list", "table", "ip", "hostnat"); !strings.Contains(out, "10.55.0.0/16") {
		t.Errorf("the host's own rules were touched:\n%s", out)
	}

	// A start whose start_network hook fails after the daemon's set-up
	// leaves nothing behind either.
	e.writeFile(e.work+"/"+vm+".start_network.fail", "")
	d.do(vm, api.ActionStart)
	d.waitStatus(vm, "failed and settled", func(s api.Status) bool { return s.State == api.StateFailed && s.Hook == "" })
	if !strings.Contains(e.readLog(vm), "network removed") {
		t.Errorf("the failed start did not remove its network; log:\n%s", e.readLog(vm))
	}
	checkNetGone(t, host, n)
}

// checkNetGone fails the test when anything of n remains in ns: its tap,
// its gateway address, a rule naming its address.
func checkNetGone(t *testing.T, ns netns, n api.Network) {
	t.Helper()
	if out := ns.run(t, "ip", "-o", "link"); strings.Contains(out, n.Tap) {
		t.Errorf("tap %s remains:\n%s", n.Tap, out)
	}
	if n.Gateway != "" {
		if out := ns.run(t, "ip", "-o", "addr"); strings.Contains(out, n.Gateway) {
			t.Errorf("address %s remains:\n%s", n.Gateway, out)
		}
	}
	if n.Address != "" {
		if out := ns.run(t, "nft", "list", "ruleset"); strings.Contains(out, n.Address) || strings.Contains(out, "vmstated") {
			t.Errorf("nftables rules remain:\n%s", out)
		}
	}
}

// A bridge VM: the daemon makes its tap, attaches it to the bridge and
// removes it after the stop; the guest (a static address on the bridge's
// network) pings the bridge's address. A VM naming a bridge that does not
// exist fails to start, and the reason names the bridge.
func TestNetworkBridge(t *testing.T) {
	needNetTools(t)
	t.Parallel()
	kernel, initrd := testguest.Net(t)
	host := newNetns(t, "br")
	host.run(t, "ip", "link", "add", "br0", "type", "bridge")
	host.run(t, "ip", "addr", "add", "10.98.0.1/24", "dev", "br0")
	host.run(t, "ip", "link", "set", "br0", "up")

	e := newEnv(t)
	e.netns = string(host)
	vm := e.addVM("bridge", netGuest(kernel, initrd, `        nic { type = bridge; bridge = br0; }`, "vmstated.ip=10.98.0.2/24 vmstated.gw=10.98.0.1"))
	missing := e.addVM("nobridge", netGuest(kernel, initrd, `        nic { type = bridge; bridge = nobr0; }`, ""))
	// A tap of someone else's is never taken, nor removed.
	host.run(t, "ip", "tuntap", "add", "dev", "theirs0", "mode", "tap")
	taken := e.addVM("taken", netGuest(kernel, initrd, `        nic { type = bridge; bridge = br0; ifname = theirs0; }`, ""))

	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	if len(st.Networks) != 1 || st.Networks[0].Bridge != "br0" {
		t.Fatalf("status networks: %+v", st.Networks)
	}
	n := st.Networks[0]
	if out := host.run(t, "ip", "-o", "link", "show", "master", "br0"); !strings.Contains(out, n.Tap) {
		t.Errorf("tap %s is not on br0:\n%s", n.Tap, out)
	}
	e.waitLog(vm, testguest.GatewayLine)
	checkTapMetrics(t, e, host, vm, n.Tap)
	if env := e.hookEnv(vm, "start_network"); env["VMSTATED_TAPS"] != n.Tap || env["VMSTATED_NIC0_BRIDGE"] != "br0" {
		t.Errorf("start_network hook saw VMSTATED_TAPS=%q VMSTATED_NIC0_BRIDGE=%q", env["VMSTATED_TAPS"], env["VMSTATED_NIC0_BRIDGE"])
	}

	d.do(missing, api.ActionStart)
	fst := d.waitStatus(missing, "failed", func(s api.Status) bool { return s.State == api.StateFailed && s.Hook == "" })
	if !strings.Contains(fst.Reason, "bridge nobr0") {
		t.Errorf("failure reason %q does not name the bridge", fst.Reason)
	}
	if tap := vmnet.TapName(missing, 0); strings.Contains(host.run(t, "ip", "-o", "link"), tap) {
		t.Errorf("the failed start left its tap %s", tap)
	}
	d.do(taken, api.ActionStart)
	fst = d.waitStatus(taken, "failed", func(s api.Status) bool { return s.State == api.StateFailed && s.Hook == "" })
	if !strings.Contains(fst.Reason, "theirs0 exists already") {
		t.Errorf("failure reason %q does not say the tap is someone else's", fst.Reason)
	}
	if out := host.run(t, "ip", "-o", "link", "show", "theirs0"); strings.Contains(out, "master") {
		t.Errorf("someone else's tap was taken:\n%s", out)
	}

	// A daemon restart (SIGTERM: an upgrade) finds the tap again, on
	// its bridge, and does not make it anew.
	index := host.run(t, "cat", "/sys/class/net/"+n.Tap+"/ifindex")
	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d on SIGTERM", code)
	}
	d = e.start()
	if st := d.waitUp(vm); len(st.Networks) != 1 || st.Networks[0] != n {
		t.Errorf("after the restart: %+v, want %+v", st.Networks, n)
	}
	if again := host.run(t, "cat", "/sys/class/net/"+n.Tap+"/ifindex"); again != index {
		t.Errorf("tap %s was made again", n.Tap)
	}

	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(vm, "stopped and settled", func(s api.Status) bool { return s.State == api.StateStopped && s.Hook == "" })
	checkNetGone(t, host, n)
	if out := host.run(t, "ip", "-o", "link", "show", "br0"); !strings.Contains(out, "br0") {
		t.Errorf("the bridge went with the tap:\n%s", out)
	}
}

// The /31 of a VM whose config directory is removed is free again once
// the VM is at rest, whether the directory goes while the daemon runs or
// while it is down: deleted VMs do not fill a pool. The pool here has a
// single /31, so each VM can only start once the one before it is gone.
func TestNetworkLeaseFreed(t *testing.T) {
	needNetTools(t)
	t.Parallel()
	host := newNetns(t, "lf")
	e := newEnv(t)
	e.netns = string(host)
	body := "    hypervisor = qemu;\n    memory = 64;\n    stop_timeout = 1;\n" +
		"    qemu { accel = tcg; serial = false; nic { type = local; pool = 100.64.9.0/31; } }\n"
	first, second := e.addVM("lfa", body), e.addVM("lfb", body)

	d := e.start()
	d.do(first, api.ActionStart)
	addr := d.waitUp(first).Networks[0].Address
	if _, err := d.c.Stop(ctx(t), first, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(first, "stopped and settled", func(s api.Status) bool { return s.State == api.StateStopped && s.Hook == "" })
	d.do(second, api.ActionStart)
	st := d.waitStatus(second, "failed", func(s api.Status) bool { return s.State == api.StateFailed && s.Hook == "" })
	if !strings.Contains(st.Reason, "is full") {
		t.Fatalf("%s, with the pool's one /31 leased to %s, failed with %q", second, first, st.Reason)
	}
	d.do(second, api.ActionFailReset)

	// Removed while the daemon runs.
	if err := os.RemoveAll(e.root + "/" + first); err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Reload(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, first+" dropped", func() bool { _, err := d.c.Get(ctx(t), first); return err != nil })
	d.do(second, api.ActionStart)
	if got := d.waitUp(second).Networks[0].Address; got != addr {
		t.Errorf("%s got %s, the pool's one /31 is %s", second, got, addr)
	}
	if _, err := d.c.Stop(ctx(t), second, api.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(second, "stopped and settled", func(s api.Status) bool { return s.State == api.StateStopped && s.Hook == "" })

	// Removed while no daemon runs.
	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d on SIGTERM", code)
	}
	if err := os.RemoveAll(e.root + "/" + second); err != nil {
		t.Fatal(err)
	}
	third := e.addVM("lfc", body)
	d = e.start()
	d.do(third, api.ActionStart)
	if got := d.waitUp(third).Networks[0].Address; got != addr {
		t.Errorf("%s got %s, the pool's one /31 is %s", third, got, addr)
	}
}

// checkTapMetrics scrapes the tap's counters of a guest that pinged its
// gateway: both directions moved, and each is the host's count of the
// other direction (what the host's end of a tap receives, the guest
// sent), read before and after the scrape.
func checkTapMetrics(t *testing.T, e *env, ns netns, vm, tap string) {
	t.Helper()
	hostCount := func(f string) float64 {
		v, err := strconv.ParseFloat(strings.TrimSpace(ns.run(t, "cat", "/sys/class/net/"+tap+"/statistics/"+f)), 64)
		if err != nil {
			t.Fatalf("%s of %s: %v", f, tap, err)
		}
		return v
	}
	rx0, tx0 := hostCount("rx_packets"), hostCount("tx_packets")
	s := scrape(t, e.socket)
	rx1, tx1 := hostCount("rx_packets"), hostCount("tx_packets")
	for _, c := range []struct {
		series   string
		min, max float64
	}{
		{"libvirt_domain_interface_stats_transmit_packets_total", rx0, rx1},
		{"libvirt_domain_interface_stats_receive_packets_total", tx0, tx1},
	} {
		v, ok := s.value(c.series, "domain", vm, "target_device", tap)
		if !ok || v < 2 || v < c.min || v > c.max {
			t.Errorf("%s{domain=%s,target_device=%s} = %v (present %v), want at least 2 (an ARP and a ping) and within the host's %v..%v",
				c.series, vm, tap, v, ok, c.min, c.max)
		}
	}
	for _, name := range []string{"libvirt_domain_interface_stats_transmit_bytes_total", "libvirt_domain_interface_stats_receive_bytes_total"} {
		if v, _ := s.value(name, "domain", vm, "target_device", tap); v <= 0 {
			t.Errorf("%s of %s: %v", name, tap, v)
		}
	}
}
