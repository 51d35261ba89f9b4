package qemu

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
)

// guestInit is the initramfs's /init: it loads the ACPI button driver,
// starts busybox acpid on the power button, and says when it is ready.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
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
echo VMSTATED-GUEST-READY
while true; do sleep 60; done
`

const powerButtonAction = "#!/bin/sh\npoweroff -f\n"

// testGuest returns a kernel and initramfs that power off on the ACPI
// power button, built once into the user's cache directory from Debian
// packages. It skips the test when they cannot be had.
func testGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no user cache directory for the test guest: %v", err)
	}
	dir := filepath.Join(cache, "vmstated-test-guest-1") // bump when the guest changes
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.gz")
	if _, err := os.Stat(initrd); err == nil {
		return kernel, initrd
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("building the test guest needs %s (Debian): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", `^linux-image-6\.1\.0-[0-9]+-amd64$`).Output()
	if err != nil {
		t.Skipf("apt-cache search for a kernel failed: %v", err)
	}
	var kpkgs []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			kpkgs = append(kpkgs, f[0])
		}
	}
	if len(kpkgs) == 0 {
		t.Skip("no linux-image-6.1.0-*-amd64 package known to apt; run apt-get update")
	}
	num := regexp.MustCompile(`6\.1\.0-([0-9]+)-`)
	sort.Slice(kpkgs, func(i, j int) bool {
		var a, b int
		fmt.Sscan(num.FindStringSubmatch(kpkgs[i])[1], &a)
		fmt.Sscan(num.FindStringSubmatch(kpkgs[j])[1], &b)
		return a < b
	})
	kpkg := kpkgs[len(kpkgs)-1]

	work, err := os.MkdirTemp("", "vmguest")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	dl := exec.CommandContext(ctx, "apt-get", "download", kpkg, "busybox-static")
	dl.Dir = work
	if b, err := dl.CombinedOutput(); err != nil {
		t.Skipf("apt-get download %s busybox-static failed: %v: %s", kpkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	root := filepath.Join(work, "root")
	for _, deb := range debs {
		if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			t.Skipf("dpkg-deb -x %s: %v: %s", deb, err, b)
		}
	}
	find := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		if len(m) == 0 {
			t.Skipf("the downloaded packages have no %s", pattern)
		}
		return m[0]
	}
	vmlinuz := find("boot/vmlinuz-*")
	files := []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755},
		{name: "dev", mode: 0o40755}, {name: "lib", mode: 0o40755}, {name: "etc", mode: 0o40755},
		{name: "etc/acpi", mode: 0o40755}, {name: "etc/acpi/PWRF", mode: 0o40755},
		{name: "init", mode: 0o100755, data: []byte(guestInit)},
		{name: "etc/acpi/PWRF/00000080", mode: 0o100755, data: []byte(powerButtonAction)},
	}
	for _, f := range []struct{ dst, src string }{
		{"bin/busybox", find("bin/busybox")},
		{"lib/button.ko", find("lib/modules/*/kernel/drivers/acpi/button.ko")},
		{"lib/evdev.ko", find("lib/modules/*/kernel/drivers/input/evdev.ko")},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, cpioFile{name: f.dst, mode: 0o100755, data: b})
	}
	var img bytes.Buffer
	zw := gzip.NewWriter(&img)
	writeCPIO(zw, files)
	zw.Close()

	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kernel, k, 0o644); err != nil {
		t.Fatal(err)
	}
	// initrd.gz last: its presence marks the cache complete.
	tmp := initrd + ".tmp"
	if err := os.WriteFile(tmp, img.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, initrd); err != nil {
		t.Fatal(err)
	}
	return kernel, initrd
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

func TestQEMURealGuestPowerOff(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testGuest(t)
	spec := hypervisor.Spec{
		Name: "guest", RunDir: runDir(t), MemoryMB: 128, CPUs: 1,
		Options: &Options{Accel: "tcg", Serial: true, ExtraArgs: []string{
			"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet",
		}},
	}
	inst := start(t, &Driver{}, spec)

	// Wait for the readiness line on the serial console.
	conn, err := net.Dial("unix", inst.Handle().Sockets["serial"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
	sc := bufio.NewScanner(conn)
	ready := false
	var console []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		console = append(console, line)
		if line == "VMSTATED-GUEST-READY" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("the guest never became ready (%v); console:\n%s", sc.Err(), strings.Join(console, "\n"))
	}

	if err := inst.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// A stop deadline as the supervisor would use; the guest is expected
	// well inside it.
	select {
	case <-inst.Done():
	case <-time.After(guard):
		t.Fatal("the guest did not power off on the ACPI power button")
	}
	e, _ := inst.Exit()
	if e.Reason != hypervisor.ExitPoweroff || e.Detail != "guest-shutdown" || e.Code != 0 {
		t.Errorf("exit %+v, want poweroff (guest-shutdown) with status 0", e)
	}
}
