//go:build !linux

package metrics

import (
	"errors"
	"runtime"
)

// procStat is what the host knows of a hypervisor process.
type procStat struct {
	cpuSeconds float64
	rssBytes   uint64
}

// netStat is a tap device's counters as the guest sees them.
type netStat struct {
	rxBytes, rxPackets, rxErrors, rxDrops uint64
	txBytes, txPackets, txErrors, txDrops uint64
}

// errNotAvailable: on this system the process and tap counters are not
// read yet. FreeBSD has them (sysctl kern.proc.pid gives a kinfo_proc
// with ki_rusage and ki_rssize; getifaddrs' if_data the tap counters), but
// reading them needs its kinfo_proc layout, which is left for a FreeBSD
// build to be tested on; until then these series are absent there.
var errNotAvailable = errors.New("process and network counters are not available on " + runtime.GOOS)

func readProc(int) (procStat, error)     { return procStat{}, errNotAvailable }
func readNetDev(string) (netStat, error) { return netStat{}, errNotAvailable }
