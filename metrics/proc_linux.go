package metrics

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat is what the host knows of a hypervisor process.
type procStat struct {
	cpuSeconds float64
	rssBytes   uint64
}

// userHZ is the unit of /proc/<pid>/stat's times: fixed at 100 in the
// kernel's ABI whatever the kernel's own tick.
const userHZ = 100

// readProc reads utime+stime from /proc/<pid>/stat and the resident set
// from /proc/<pid>/statm.
func readProc(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold blanks and parentheses: the
	// fields that follow start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: bad times %q %q", pid, f[11], f[12])
	}
	st := procStat{cpuSeconds: float64(utime+stime) / userHZ}
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return procStat{}, err
	}
	mf := strings.Fields(string(m))
	if len(mf) < 2 {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %q", pid, m)
	}
	pages, err := strconv.ParseUint(mf[1], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	st.rssBytes = pages * uint64(os.Getpagesize())
	return st, nil
}

// netStat is a tap device's counters as the guest sees them.
type netStat struct {
	rxBytes, rxPackets, rxErrors, rxDrops uint64
	txBytes, txPackets, txErrors, txDrops uint64
}

// sysClassNet is where Linux lists network devices.
var sysClassNet = "/sys/class/net"

// readNetDev reads /sys/class/net/<dev>/statistics. What the host's end
// of a tap transmits the guest receives, so the directions are swapped,
// as libvirt does for tap devices.
func readNetDev(dev string) (netStat, error) {
	if dev == "" || dev == "." || dev == ".." || strings.Contains(dev, "/") {
		return netStat{}, fmt.Errorf("bad device name %q", dev)
	}
	dir := filepath.Join(sysClassNet, dev, "statistics")
	var n netStat
	for _, c := range []struct {
		file string
		to   *uint64
	}{
		{"tx_bytes", &n.rxBytes}, {"tx_packets", &n.rxPackets}, {"tx_errors", &n.rxErrors}, {"tx_dropped", &n.rxDrops},
		{"rx_bytes", &n.txBytes}, {"rx_packets", &n.txPackets}, {"rx_errors", &n.txErrors}, {"rx_dropped", &n.txDrops},
	} {
		b, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			return netStat{}, err
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return netStat{}, fmt.Errorf("%s/%s: %w", dir, c.file, err)
		}
		*c.to = v
	}
	return n, nil
}
