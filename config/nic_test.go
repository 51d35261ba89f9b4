package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The NIC types the daemon sets up itself: what they need, the keys only
// type local takes, and each bad value's error at its position.
func TestNICTypes(t *testing.T) {
	dir := writeVMConfig(t, `ci {
    hypervisor = qemu;
    qemu {
        nic { type = bridge; bridge = br0; }
        nic { type = local; }
        nic { type = local; nat = true; pool = 10.7.0.0/16; dns = [ "192.0.2.53", "192.0.2.54" ]; ifname = lab0; }
    }
}
`)
	vm, diags := LoadDir(dir, LoadOptions{})
	if vm == nil || len(diags) > 0 {
		t.Fatalf("valid NICs: %v", diags)
	}
	want := []NIC{
		{Type: NICBridge, Bridge: "br0", Model: DefaultNICModel},
		{Type: NICLocal, Model: DefaultNICModel},
		{Type: NICLocal, Ifname: "lab0", Model: DefaultNICModel, NAT: true, Pool: "10.7.0.0/16", DNS: []string{"192.0.2.53", "192.0.2.54"}},
	}
	if !reflect.DeepEqual(vm.QEMU.NICs, want) {
		t.Errorf("NICs:\n got %+v\nwant %+v", vm.QEMU.NICs, want)
	}

	for _, c := range []struct {
		nic, key, pos, msg string
	}{
		{`nic { type = bridge; }`, "qemu.nic", "4:13", "type bridge needs bridge = br0"},
		{`nic { type = local; bridge = br0; }`, "qemu.nic.bridge", "4:13", "type local joins no bridge"},
		{`nic { type = tap; ifname = tap0; nat = true; }`, "qemu.nic.nat", "4:48", "is for nic { type = local; } only"},
		{`nic { type = bridge; bridge = br0; pool = 10.0.0.0/8; }`, "qemu.nic.pool", "4:51", "is for nic { type = local; } only"},
		{`nic { type = local; pool = 10.0.0.1/32; }`, "qemu.nic.pool", "4:36", "holds no /31"},
		{`nic { type = local; pool = "fd00::/64"; }`, "qemu.nic.pool", "4:36", "is not an IPv4 prefix"},
		{`nic { type = local; pool = 127.0.0.0/24; }`, "qemu.nic.pool", "4:36", "overlaps 127.0.0.0/8"},
		{`nic { type = local; pool = 0.0.0.0/0; }`, "qemu.nic.pool", "4:36", "overlaps 0.0.0.0/8"},
		{`nic { type = local; pool = 224.0.0.0/31; }`, "qemu.nic.pool", "4:36", "overlaps 224.0.0.0/4"},
		{`nic { type = local; pool = 255.255.255.254/31; }`, "qemu.nic.pool", "4:36", "overlaps 240.0.0.0/4"},
		{`nic { type = local; dns = [ "dns.example" ]; }`, "qemu.nic.dns", "4:35", "is not an IPv4 address"},
		{`nic { type = vde; }`, "qemu.nic.type", "4:22", "must be one of user, tap, bridge, local"},
		{`nic { type = local; ifname = t0; } nic { type = bridge; bridge = br0; ifname = t0; }`, "qemu.nic.ifname", "4:48", "the ifname of another nic"},
	} {
		dir := writeVMConfig(t, "ci {\n    hypervisor = qemu;\n    qemu {\n        "+c.nic+"\n    }\n}\n")
		vm, diags := LoadDir(dir, LoadOptions{})
		if vm != nil {
			t.Errorf("%s: loaded", c.nic)
			continue
		}
		found := false
		for _, d := range diags.Errors() {
			if d.Key == c.key && strings.Contains(d.String(), filepath.Join(dir, FileName)+":"+c.pos) && strings.Contains(d.Msg, c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: got %v; want %s at %s saying %q", c.nic, diags, c.key, c.pos, c.msg)
		}
	}
}

// The host's check warns of a bridge it lacks, and only of that.
func TestMissingBridgeWarning(t *testing.T) {
	dir := writeVMConfig(t, `ci {
    hypervisor = qemu;
    qemu {
        nic { type = bridge; bridge = nobr-vmstated; }
        nic { type = bridge; bridge = lo; }
    }
}
`)
	snap := LoadRoot(filepath.Dir(dir), LoadOptions{})
	diags := HostDiagnostics(snap, "linux")
	if len(diags) != 1 || diags[0].Severity != Warning || !strings.Contains(diags[0].Msg, "bridge nobr-vmstated does not exist") {
		t.Errorf("got %v; want one warning naming nobr-vmstated", diags)
	}
}
