package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/config"
)

func ctl(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String() + errb.String()
}

// Bad create command lines are refused with what to do, and leave nothing.
func TestCreateRefusals(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	disk := filepath.Join(dir, "d.img")
	if code, out := ctl("create", "disk", "-s", "8M", disk); code != exitOK {
		t.Fatalf("create disk: %d %s", code, out)
	}
	odd := filepath.Join(dir, "a$HOME.img")
	os.WriteFile(odd, nil, 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"create"}, exitUsage, "create what"},
		{[]string{"create", "box"}, exitUsage, "want disk or vm"},
		{[]string{"create", "disk", "-s", "1G"}, exitUsage, "name the image"},
		{[]string{"create", "disk", "-s", "1Q", filepath.Join(dir, "x")}, exitUsage, "suffix"},
		{[]string{"create", "disk", "-b", disk, "-i", disk, filepath.Join(dir, "x")}, exitUsage, "exclude"},
		{[]string{"create", "disk", "-f", "vmdk", "-s", "1M", filepath.Join(dir, "x")}, exitFailed, "raw or qcow2"},
		{[]string{"create", "disk", "-s", "1M", disk}, exitFailed, "never overwritten"},
		{[]string{"create", "vm", "-c", root}, exitUsage, "name a VM"},
		{[]string{"create", "vm", "-c", root, "9lives"}, exitUsage, "start with a letter"},
		{[]string{"create", "vm", "-c", root, "-p", "-1", "web"}, exitUsage, "-p"},
		{[]string{"create", "vm", "-c", filepath.Join(dir, "nope"), "web"}, exitFailed, "does not exist"},
		{[]string{"create", "vm", "-c", root, "-d", filepath.Join(dir, "missing.img"), "web"}, exitFailed, "create disk"},
		{[]string{"create", "vm", "-c", root, "-d", odd, "web"}, exitFailed, "cannot be written"},
		{[]string{"create", "vm", "-c", root, "-t", "nosuch", "web"}, exitFailed, "templates"},
		{[]string{"create", "vm", "-c", root, "-p", "5000", "web"}, exitFailed, "nothing was created"},
		{[]string{"create", "vm", "-c", root, "-i", disk, "web"}, exitUsage, "go with -k"},
		{[]string{"create", "vm", "-c", root, "-a", "console=ttyS0", "web"}, exitUsage, "go with -k"},
		{[]string{"create", "vm", "-c", root, "-k", filepath.Join(dir, "vmlinuz"), "web"}, exitFailed, "kernel"},
		{[]string{"create", "vm", "-c", root, "-n", "bridge", "web"}, exitUsage, "needs the interface's name"},
		{[]string{"create", "vm", "-c", root, "-n", "bridge:a/b", "web"}, exitUsage, "not an interface name"},
		{[]string{"create", "vm", "-c", root, "-n", "vde:sw", "web"}, exitUsage, "-n local"},
		{[]string{"create", "vm", "-c", root, "-n", "local:masq", "web"}, exitUsage, "only :nat"},
	} {
		code, out := ctl(c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, %q; want exit %d saying %q", c.args, code, out, c.code, c.want)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("refused commands left %v in the root", ents)
	}
	for _, n := range []string{"x"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s was created", n)
		}
	}

	// A name another directory already uses is refused too.
	os.Mkdir(filepath.Join(root, "other"), 0o755)
	os.WriteFile(filepath.Join(root, "other", "config"), []byte("web { hypervisor = exec; exec { command = [ \"/bin/true\" ]; } }\n"), 0o644)
	if code, out := ctl("create", "vm", "-c", root, "web"); code != exitFailed || !strings.Contains(out, "already exists in") {
		t.Errorf("duplicate name: %d %s", code, out)
	}
	// And the plain form loads.
	if code, out := ctl("-o", "json", "create", "vm", "-c", root, "-d", disk, "db"); code != exitOK || !strings.Contains(out, `"name":"db"`) {
		t.Fatalf("create vm: %d %s", code, out)
	}
	vm, diags := config.LoadDir(filepath.Join(root, "db"), config.LoadOptions{})
	if vm == nil || len(diags) > 0 || vm.Hypervisor != "qemu" || len(vm.QEMU.Disks) != 1 || vm.QEMU.Disks[0].Path != disk || vm.QEMU.Disks[0].Format != "raw" {
		t.Errorf("db: %+v %v", vm, diags)
	}
}

// create vm -k -i -a -n writes a config that boots the kernel directly
// and has the network devices asked for, in order.
func TestCreateVMKernelAndNetworks(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.gz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	os.WriteFile(initrd, []byte("i"), 0o644)
	code, out := ctl("create", "vm", "-c", root, "-k", kernel, "-i", initrd, "-a", "console=ttyS0 quiet",
		"-n", "local", "-n", "local:nat", "-n", "bridge:br0", "-n", "tap:tap7", "-n", "user", "lab")
	if code != exitOK {
		t.Fatalf("create vm: %d %s", code, out)
	}
	vm, diags := config.LoadDir(filepath.Join(root, "lab"), config.LoadOptions{})
	if vm == nil || len(diags) > 0 {
		t.Fatalf("lab: %+v %v", vm, diags)
	}
	q := vm.QEMU
	if q.Kernel != kernel || q.Initrd != initrd || q.Append != "console=ttyS0 quiet" {
		t.Errorf("kernel %q initrd %q append %q", q.Kernel, q.Initrd, q.Append)
	}
	want := []config.NIC{
		{Type: "local"}, {Type: "local", NAT: true}, {Type: "bridge", Bridge: "br0"},
		{Type: "tap", Ifname: "tap7"}, {Type: "user"},
	}
	if len(q.NICs) != len(want) {
		t.Fatalf("NICs %+v, want %+v", q.NICs, want)
	}
	for i, n := range q.NICs {
		w := want[i]
		if n.Type != w.Type || n.NAT != w.NAT || n.Bridge != w.Bridge || n.Ifname != w.Ifname {
			t.Errorf("nic %d: %+v, want %+v", i, n, w)
		}
	}
}
