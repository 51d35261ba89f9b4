package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// QGABinary is where Debian's qemu-guest-agent package installs the agent.
const QGABinary = "/usr/sbin/qemu-ga"

// What the agent guest configures, for tests to find again through the
// agent.
const (
	// AgentAddress is the address the agent guest puts on its dummy0
	// interface, with AgentPrefix.
	AgentAddress = "192.0.2.10"
	AgentPrefix  = 24
	// AgentHostname is the agent guest's host name.
	AgentHostname = "vmstated-agent-guest"
	// AgentOSName is the PRETTY_NAME of its /etc/os-release.
	AgentOSName = "vmstated test guest 1.0"
)

// AgentModules are the modules, in load order, a guest needs to reach the
// agent's virtio-serial port.
var AgentModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_console"}

// agentInit brings up an address on a dummy interface, runs qemu-ga on
// the port QEMU named org.qemu.guest_agent.0 (mdev makes no
// /dev/virtio-ports links, so the port is found by its name in sysfs),
// and prints ReadyLine once the agent holds the port open. It loads no
// ACPI button driver and runs no acpid: the power button does nothing, so
// only the agent can power it off.
const agentInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp
for m in ` + "MODULES" + ` dummy; do insmod /lib/$m.ko; done
hostname ` + AgentHostname + `
ip link add dummy0 type dummy 2>/dev/null
ip link set dummy0 up
ip addr add ` + AgentAddress + `/` + "PREFIX" + ` dev dummy0
port=""
while [ -z "$port" ]; do
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
	done
	[ -z "$port" ] && sleep 0.1
done
while [ ! -e "$port" ]; do sleep 0.1; done
/sbin/qemu-ga -m virtio-serial -p "$port" -t /run -f /run/qemu-ga.pid &
pid=$!
until ls -l /proc/$pid/fd 2>/dev/null | grep -q "$port"; do sleep 0.1; done
echo ` + ReadyLine + `
while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
`

// agentShutdown is the /sbin/shutdown qemu-ga runs for guest-shutdown:
// it must exit 0 for the agent to count the request done.
const agentShutdown = "#!/bin/sh\n(sleep 0.1; poweroff -f) >/dev/null 2>&1 &\nexit 0\n"

// Agent returns the test guest's kernel and an initramfs that runs the
// host's qemu-ga (copied in with the shared libraries it needs) on the
// virtio-serial port org.qemu.guest_agent.0. It skips the test when the
// host has no qemu-ga.
func Agent(tb testing.TB) (kernel, initrd string) {
	tb.Helper()
	if _, err := os.Stat(QGABinary); err != nil {
		tb.Skipf("the agent guest needs %s (apt-get install qemu-guest-agent): %v", QGABinary, err)
	}
	dir := guestCache(tb)
	init := strings.NewReplacer("MODULES", strings.Join(AgentModules, " "), "PREFIX", strconv.Itoa(AgentPrefix)).Replace(agentInit)
	files := []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "sbin", mode: 0o40755}, {name: "proc", mode: 0o40755},
		{name: "sys", mode: 0o40755}, {name: "dev", mode: 0o40755}, {name: "lib", mode: 0o40755},
		{name: "etc", mode: 0o40755},
		{name: "init", mode: 0o100755, data: []byte(init)},
		{name: "bin/busybox", mode: 0o100755, data: readCached(tb, dir, "busybox")},
		{name: "sbin/shutdown", mode: 0o100755, data: []byte(agentShutdown)},
		{name: "etc/os-release", mode: 0o100644, data: []byte("NAME=\"vmstated test guest\"\nID=vmstated\nVERSION_ID=1.0\nPRETTY_NAME=\"" + AgentOSName + "\"\n")},
	}
	for _, m := range append(append([]string(nil), AgentModules...), "dummy") {
		files = append(files, cpioFile{name: "lib/" + m + ".ko", mode: 0o100644, data: readCached(tb, dir, m+".ko")})
	}
	files = append(files, hostProgram(tb, QGABinary, "sbin/qemu-ga")...)
	return filepath.Join(dir, "vmlinuz"), writeInitrd(tb, files)
}

// lddPath matches the paths in ldd's output: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
// and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddPath = regexp.MustCompile(`(?m)(?:=>\s+|^\s+)(/\S+)\s+\(0x`)

// hostProgram returns the host's program bin as name, plus each shared
// library ldd lists and the dynamic loader, at the paths the program
// looks for them (symbolic links resolved into files), and the
// directories those paths need.
func hostProgram(tb testing.TB, bin, name string) []cpioFile {
	tb.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		tb.Skipf("ldd %s: %v", bin, err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		tb.Fatal(err)
	}
	files := []cpioFile{{name: name, mode: 0o100755, data: b}}
	dirs := map[string]bool{}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		lib := m[1]
		data, err := os.ReadFile(lib) // follows the links
		if err != nil {
			tb.Fatalf("reading %s, which %s needs: %v", lib, bin, err)
		}
		rel := strings.TrimPrefix(lib, "/")
		for d := filepath.Dir(rel); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		files = append(files, cpioFile{name: rel, mode: 0o100755, data: data})
	}
	var dl []cpioFile
	for d := range dirs {
		if d != "lib" {
			dl = append(dl, cpioFile{name: d, mode: 0o40755})
		}
	}
	// Parents before children.
	sort.Slice(dl, func(i, j int) bool { return len(dl[i].name) < len(dl[j].name) })
	return append(dl, files...)
}
