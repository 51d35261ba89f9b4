// Package testguest builds the QEMU test guest that tests of several
// packages boot: a Debian kernel and a busybox initramfs whose init loads
// the ACPI button driver, runs acpid so that the power button powers the
// guest off, prints ReadyLine on the serial console once it would, and then
// keeps a shell on that console (a new one whenever it exits). Agent
// builds a variant that runs the host's qemu-ga instead of acpid.
// It is test support only: its functions take a testing.TB and skip the
// test when the guest cannot be built (no Debian tools, no network).
package testguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// ReadyLine is what the guest prints on ttyS0 once the power button
// powers it off.
const ReadyLine = "VMSTATED-GUEST-READY"

// Stubborn on the kernel command line makes the guest ignore the power
// button: it prints ReadyLine and idles.
const Stubborn = "vmstated.stubborn"

// guestInit is the initramfs's /init: it loads the ACPI button driver,
// starts busybox acpid on the power button, says when it is ready, and
// then keeps a shell on the serial console for console tests.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
if grep -q ` + Stubborn + ` /proc/cmdline; then
	echo ` + ReadyLine + `
	while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
fi
insmod /lib/evdev.ko
insmod /lib/button.ko
dev=""
while [ -z "$dev" ]; do
	for d in /sys/class/input/event*; do
		if grep -q "Power Button" "$d/device/name" 2>/dev/null; then dev=/dev/input/${d##*/}; fi
	done
	[ -z "$dev" ] && sleep 0.1
done
while [ ! -e "$dev" ]; do sleep 0.1; done
mkdir -p /var/log /var/run
acpid -f &
pid=$!
until ls -l /proc/$pid/fd 2>/dev/null | grep -q "$dev"; do sleep 0.1; done
echo ` + ReadyLine + `
while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
`

const powerButtonAction = "#!/bin/sh\npoweroff -f\n"

// guestFiles are the parts of the test guest taken from Debian packages.
var guestFiles = []struct{ name, pattern string }{
	{"vmlinuz", "boot/vmlinuz-*"},
	{"busybox", "bin/busybox"},
	{"button.ko", "lib/modules/*/kernel/drivers/acpi/button.ko"},
	{"evdev.ko", "lib/modules/*/kernel/drivers/input/evdev.ko"},
	// The CD drive and its file system (a cloud-init seed): the modules
	// in the order insmod needs them.
	{"scsi_common.ko", "lib/modules/*/kernel/drivers/scsi/scsi_common.ko"},
	{"scsi_mod.ko", "lib/modules/*/kernel/drivers/scsi/scsi_mod.ko"},
	{"cdrom.ko", "lib/modules/*/kernel/drivers/cdrom/cdrom.ko"},
	{"libata.ko", "lib/modules/*/kernel/drivers/ata/libata.ko"},
	{"libahci.ko", "lib/modules/*/kernel/drivers/ata/libahci.ko"},
	{"ahci.ko", "lib/modules/*/kernel/drivers/ata/ahci.ko"},
	{"sr_mod.ko", "lib/modules/*/kernel/drivers/scsi/sr_mod.ko"},
	{"isofs.ko", "lib/modules/*/kernel/fs/isofs/isofs.ko"},
	// virtio over PCI; on it the guest agent's virtio-serial port and the
	// NIC driver; and a network device that needs no host side.
	{"virtio.ko", "lib/modules/*/kernel/drivers/virtio/virtio.ko"},
	{"virtio_ring.ko", "lib/modules/*/kernel/drivers/virtio/virtio_ring.ko"},
	{"virtio_pci_legacy_dev.ko", "lib/modules/*/kernel/drivers/virtio/virtio_pci_legacy_dev.ko"},
	{"virtio_pci_modern_dev.ko", "lib/modules/*/kernel/drivers/virtio/virtio_pci_modern_dev.ko"},
	{"virtio_pci.ko", "lib/modules/*/kernel/drivers/virtio/virtio_pci.ko"},
	{"virtio_console.ko", "lib/modules/*/kernel/drivers/char/virtio_console.ko"},
	{"dummy.ko", "lib/modules/*/kernel/drivers/net/dummy.ko"},
	{"failover.ko", "lib/modules/*/kernel/net/core/failover.ko"},
	{"net_failover.ko", "lib/modules/*/kernel/drivers/net/net_failover.ko"},
	{"virtio_net.ko", "lib/modules/*/kernel/drivers/net/virtio_net.ko"},
}

// CDModules are the modules a guest loads, in this order, to read a CD.
var CDModules = []string{"scsi_common", "scsi_mod", "cdrom", "libata", "libahci", "ahci", "sr_mod", "isofs"}

// NetModules are the modules a guest loads, in this order, for a
// virtio-net NIC (QEMU's virtio-net-pci).
var NetModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net"}

// Lines the networked guest (Net) prints on ttyS0.
const (
	// AddressLine starts "VMSTATED-NET-ADDRESS <ip>/<bits> gw <router>
	// dns <servers> host <hostname>": the address it configured.
	AddressLine = "VMSTATED-NET-ADDRESS"
	// GatewayLine: its gateway answered a ping.
	GatewayLine = "VMSTATED-NET-GATEWAY-OK"
	// PingLine is followed by the address of vmstated.ping= once that
	// answered a ping.
	PingLine = "VMSTATED-NET-PING-OK"
)

// netInit configures eth0 by DHCP (busybox udhcpc), or statically from
// vmstated.ip= and vmstated.gw= on the kernel command line, prints what it
// got, pings its gateway and, with vmstated.ping=ADDR, that address, then
// keeps a shell on the console.
const netInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ` + "virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net" + `; do insmod /lib/$m.ko; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "${w#*=}";; esac; done; }
until [ -e /sys/class/net/eth0 ]; do sleep 0.1; done
ip link set lo up
ip link set eth0 up
ip=$(arg vmstated.ip)
if [ -n "$ip" ]; then
	ip addr add "$ip" dev eth0
	gw=$(arg vmstated.gw)
	echo "` + "VMSTATED-NET-ADDRESS" + ` $ip gw $gw dns - host -"
else
	until udhcpc -i eth0 -s /bin/dhcp-event -q -n -t 5 -T 1; do :; done
	. /tmp/lease
fi
until ping -c 1 -W 1 "$gw" >/dev/null 2>&1; do :; done
echo ` + "VMSTATED-NET-GATEWAY-OK" + `
target=$(arg vmstated.ping)
if [ -n "$target" ]; then
	until ping -c 1 -W 1 "$target" >/dev/null 2>&1; do :; done
	echo "` + "VMSTATED-NET-PING-OK" + ` $target"
fi
while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
`

// dhcpEvent is udhcpc's script: it configures eth0 from the lease and
// leaves the gateway for init in /tmp/lease.
const dhcpEvent = `#!/bin/sh
case "$1" in
bound|renew)
	bits=$(ipcalc -p "$ip" "$subnet" | cut -d= -f2)
	ip addr flush dev "$interface"
	ip addr add "$ip/$bits" dev "$interface"
	ip route add default via "$router" dev "$interface"
	echo "gw=$router" > /tmp/lease
	echo "` + "VMSTATED-NET-ADDRESS" + ` $ip/$bits gw $router dns $dns host $hostname" > /dev/ttyS0
	;;
esac
`

// Net returns the test guest's kernel and an initramfs whose init brings
// up its virtio-net NIC (see netInit) and prints AddressLine, GatewayLine
// and PingLine on ttyS0 as it gets there.
func Net(tb testing.TB) (kernel, initrd string) {
	tb.Helper()
	dir := guestCache(tb)
	files := []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755},
		{name: "dev", mode: 0o40755}, {name: "lib", mode: 0o40755}, {name: "tmp", mode: 0o41777},
		{name: "init", mode: 0o100755, data: []byte(netInit)},
		{name: "bin/dhcp-event", mode: 0o100755, data: []byte(dhcpEvent)},
		{name: "bin/busybox", mode: 0o100755, data: readCached(tb, dir, "busybox")},
	}
	for _, m := range NetModules {
		files = append(files, cpioFile{name: "lib/" + m + ".ko", mode: 0o100644, data: readCached(tb, dir, m+".ko")})
	}
	return filepath.Join(dir, "vmlinuz"), writeInitrd(tb, files)
}

// Custom returns the test guest's kernel and an initramfs of busybox, the
// modules named (as /lib/NAME.ko) and init as /init, for a test that
// needs a guest of its own making.
func Custom(tb testing.TB, init string, modules ...string) (kernel, initrd string) {
	tb.Helper()
	dir := guestCache(tb)
	read := func(name string) []byte { return readCached(tb, dir, name) }
	files := []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755},
		{name: "dev", mode: 0o40755}, {name: "lib", mode: 0o40755},
		{name: "init", mode: 0o100755, data: []byte(init)},
		{name: "bin/busybox", mode: 0o100755, data: read("busybox")},
	}
	for _, m := range modules {
		files = append(files, cpioFile{name: "lib/" + m + ".ko", mode: 0o100644, data: read(m + ".ko")})
	}
	return filepath.Join(dir, "vmlinuz"), writeInitrd(tb, files)
}

// readCached reads one of the guest's parts from the cache directory.
func readCached(tb testing.TB, dir, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// writeInitrd writes files as a gzipped initramfs in the test's temporary
// directory.
func writeInitrd(tb testing.TB, files []cpioFile) string {
	var img bytes.Buffer
	zw := gzip.NewWriter(&img)
	writeCPIO(zw, files)
	zw.Close()
	initrd := filepath.Join(tb.TempDir(), "initrd.gz")
	if err := os.WriteFile(initrd, img.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return initrd
}

// Build returns a kernel and an initramfs that powers off on the ACPI
// power button (or, booted with Stubborn on its command line, ignores it).
// The Debian parts are fetched once into the user's cache directory; the
// initramfs is built afresh in the test's temporary directory. It skips
// the test when the parts cannot be had.
func Build(tb testing.TB) (kernel, initrd string) {
	tb.Helper()
	dir := guestCache(tb)
	read := func(name string) []byte { return readCached(tb, dir, name) }
	files := []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755},
		{name: "dev", mode: 0o40755}, {name: "lib", mode: 0o40755}, {name: "etc", mode: 0o40755},
		{name: "etc/acpi", mode: 0o40755}, {name: "etc/acpi/PWRF", mode: 0o40755},
		{name: "init", mode: 0o100755, data: []byte(guestInit)},
		{name: "etc/acpi/PWRF/00000080", mode: 0o100755, data: []byte(powerButtonAction)},
		{name: "bin/busybox", mode: 0o100755, data: read("busybox")},
		{name: "lib/button.ko", mode: 0o100644, data: read("button.ko")},
		{name: "lib/evdev.ko", mode: 0o100644, data: read("evdev.ko")},
	}
	return filepath.Join(dir, "vmlinuz"), writeInitrd(tb, files)
}

var guestCacheMu sync.Mutex

// guestCache fills the cache directory with guestFiles once.
func guestCache(tb testing.TB) string {
	tb.Helper()
	guestCacheMu.Lock()
	defer guestCacheMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		tb.Skipf("no user cache directory for the test guest: %v", err)
	}
	dir := filepath.Join(cache, "vmstated-test-guest")
	complete := true
	for _, f := range guestFiles {
		if _, err := os.Stat(filepath.Join(dir, f.name)); err != nil {
			complete = false
		}
	}
	if complete {
		return dir
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("building the test guest needs %s (Debian): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", `^linux-image-6\.1\.0-[0-9]+-amd64$`).Output()
	if err != nil {
		tb.Skipf("apt-cache search for a kernel failed: %v", err)
	}
	num := regexp.MustCompile(`^linux-image-6\.1\.0-([0-9]+)-amd64$`)
	kpkg, best := "", -1
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if m := num.FindStringSubmatch(f[0]); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			if n > best {
				kpkg, best = f[0], n
			}
		}
	}
	if kpkg == "" {
		tb.Skip("no linux-image-6.1.0-*-amd64 package known to apt; run apt-get update")
	}

	work, err := os.MkdirTemp("", "vmguest")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(work)
	dl := exec.CommandContext(ctx, "apt-get", "download", kpkg, "busybox-static")
	dl.Dir = work
	if b, err := dl.CombinedOutput(); err != nil {
		tb.Skipf("apt-get download %s busybox-static failed: %v: %s", kpkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	root := filepath.Join(work, "root")
	for _, deb := range debs {
		if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			tb.Skipf("dpkg-deb -x %s: %v: %s", deb, err, b)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, f := range guestFiles {
		m, _ := filepath.Glob(filepath.Join(root, f.pattern))
		if len(m) == 0 {
			tb.Skipf("the downloaded packages have no %s", f.pattern)
		}
		b, err := os.ReadFile(m[0])
		if err != nil {
			tb.Fatal(err)
		}
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

type cpioFile struct {
	name string
	mode uint32
	data []byte
}

// writeCPIO writes files as a "newc" cpio archive, the initramfs format.
func writeCPIO(w *gzip.Writer, files []cpioFile) {
	pad := func(n int) {
		if r := n % 4; r != 0 {
			w.Write(make([]byte, 4-r))
		}
	}
	for i, f := range append(files, cpioFile{name: "TRAILER!!!"}) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, f.mode, 0, 0, 1, 0, len(f.data), 0, 0, 0, 0, len(f.name)+1, 0)
		w.Write([]byte(hdr))
		w.Write([]byte(f.name + "\x00"))
		pad(len(hdr) + len(f.name) + 1)
		w.Write(f.data)
		pad(len(f.data))
	}
}

// TickPrefix starts the line the ticking guest prints every second: its
// count of ticks since boot and its uptime, as "VMSTATED-TICK 12 13.05".
// A guest restored from a saved state goes on counting; one booted again
// starts from 1.
const TickPrefix = "VMSTATED-TICK"

// BootLine is what the ticking guest prints once at boot, before its
// first tick.
const BootLine = "VMSTATED-GUEST-BOOTED"

const tickInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
echo ` + BootLine + `
echo ` + ReadyLine + `
i=0
while true; do
	i=$((i+1))
	read up idle </proc/uptime
	echo "` + TickPrefix + ` $i $up"
	sleep 1
done
`

// Ticking returns a kernel and an initramfs whose init prints BootLine and
// ReadyLine, then a TickPrefix line every second, for tests of suspend and
// restore (whether the guest carries on or starts again).
func Ticking(tb testing.TB) (kernel, initrd string) {
	tb.Helper()
	return Custom(tb, tickInit)
}

// LastTick returns the tick count of the last TickPrefix line in lines,
// 0 when there is none.
func LastTick(lines []string) int {
	n := 0
	for _, l := range lines {
		i := strings.Index(l, TickPrefix+" ")
		if i < 0 {
			continue
		}
		var c int
		if _, err := fmt.Sscanf(l[i+len(TickPrefix)+1:], "%d", &c); err == nil {
			n = c
		}
	}
	return n
}
