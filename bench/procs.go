package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what /proc/PID/stat says about CPU use.
type procStat struct {
	utime, stime uint64 // clock ticks
}

// readStat reads utime and stime of pid (Linux /proc).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: bad cpu fields", pid)
	}
	return procStat{utime: u, stime: s}, nil
}

// clockTick is USER_HZ; 100 on every Linux architecture Go supports.
const clockTick = 100

// cpuSeconds is the CPU time in st.
func (st procStat) cpuSeconds() float64 { return float64(st.utime+st.stime) / clockTick }

// rssKB reads VmRSS of pid in KiB.
func rssKB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fs := strings.Fields(line)
			if len(fs) >= 2 {
				return strconv.ParseInt(fs[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// children maps each live pid to its parent, from /proc.
func parents() map[int]int {
	out := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = ppid
	}
	return out
}

// descendants returns every process below root.
func descendants(root int) []int {
	par := parents()
	kids := map[int][]int{}
	for p, pp := range par {
		kids[pp] = append(kids[pp], p)
	}
	var out []int
	stack := []int{root}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, k := range kids[p] {
			out = append(out, k)
			stack = append(stack, k)
		}
	}
	return out
}

// killDescendants SIGKILLs every process below this one, except those in
// keep, until none is left or the deadline passes, and reaps the ones that
// became our children (we are a subreaper where the OS allows it).
func killDescendants(keep map[int]bool, limit time.Duration) int {
	self := os.Getpid()
	deadline := time.Now().Add(limit)
	killed := map[int]bool{}
	for {
		left := 0
		for _, p := range descendants(self) {
			if keep[p] {
				continue
			}
			left++
			if !killed[p] {
				_ = syscall.Kill(p, syscall.SIGKILL)
				killed[p] = true
			}
		}
		reapOrphans(keep)
		if left == 0 || time.Now().After(deadline) {
			return len(killed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reapOrphans collects exited children that nobody waits for (processes
// re-parented to us), leaving the ones in keep to their owners.
func reapOrphans(keep map[int]bool) {
	par := parents()
	self := os.Getpid()
	for p, pp := range par {
		if pp != self || keep[p] {
			continue
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(p, &ws, syscall.WNOHANG, nil)
	}
}
