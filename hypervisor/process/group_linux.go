//go:build linux

package process

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Signal sends sig to every process of the group. With a cgroup, no
// process may fork a child that misses the signal: SIGKILL goes through
// cgroup.kill; SIGSTOP is sent again to members that appeared meanwhile
// until there are none (a stopped process cannot fork); other signals are
// sent with the cgroup frozen, to exactly the processes it holds. Without
// a cgroup, the process group gets it (kill -- -PGID), which the kernel
// delivers to a fork in progress too. Signalling a group that is empty is
// not an error.
func (g Group) Signal(sig syscall.Signal) error {
	if g.Cgroup != "" {
		return g.signalCgroup(sig)
	}
	if g.PGID <= 0 || !g.ours() {
		return nil
	}
	if err := unix.Kill(-g.PGID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, g.PGID, err)
	}
	return nil
}

// ours reports whether the process group number still names this group:
// while any member lives, no new process can take the number as its pid,
// so a live process with that pid and another start time means our group
// is gone and the number now belongs to someone else.
func (g Group) ours() bool {
	st, _, err := statOf(g.PGID)
	if err != nil {
		return true // no process has the number: only our members can hold it
	}
	return st == g.LeaderStart
}

func (g Group) signalCgroup(sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		err := os.WriteFile(filepath.Join(g.Cgroup, "cgroup.kill"), []byte("1"), 0)
		if err == nil || errors.Is(err, unix.ENODEV) || errors.Is(err, os.ErrNotExist) && !exists(g.Cgroup) {
			return nil
		}
		// Linux before 5.14 has no cgroup.kill: signal each member.
	}
	switch sig {
	case syscall.SIGSTOP:
		sent := map[int]bool{}
		for {
			n, err := g.signalMembers(sig, sent)
			if err != nil || n == 0 {
				return err
			}
		}
	case syscall.SIGCONT:
		// Stopped processes cannot fork.
		_, err := g.signalMembers(sig, map[int]bool{})
		return err
	}
	if err := g.freeze(true); err == nil {
		defer g.freeze(false)
	}
	_, err := g.signalMembers(sig, map[int]bool{})
	return err
}

// signalMembers sends sig to the members not in sent, adds them to it,
// and returns how many there were.
func (g Group) signalMembers(sig syscall.Signal, sent map[int]bool) (int, error) {
	pids, err := g.members()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range pids {
		if sent[pid] {
			continue
		}
		sent[pid] = true
		n++
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return n, fmt.Errorf("signal %v to pid %d of cgroup %s: %w", sig, pid, g.Cgroup, err)
		}
	}
	return n, nil
}

// freeze writes cgroup.freeze. A frozen process runs no code, and a child
// forked into a frozen cgroup starts frozen; signals sent meanwhile are
// acted on once it thaws.
func (g Group) freeze(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return os.WriteFile(filepath.Join(g.Cgroup, "cgroup.freeze"), []byte(v), 0)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// members returns the live processes of the group.
func (g Group) members() ([]int, error) {
	if g.Cgroup != "" {
		b, err := os.ReadFile(filepath.Join(g.Cgroup, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
			// Removed, or being removed (ENODEV): nothing left in it.
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list the processes of cgroup %s: %w", g.Cgroup, err)
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids, nil
	}
	if g.PGID <= 0 || !g.ours() {
		return nil, nil
	}
	return processesInGroup(g.PGID)
}

// processesInGroup scans /proc for the live processes whose process group
// is pgid.
func processesInGroup(pgid int) ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if g, live := pgrpOf(pid); live && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// pgrpOf returns the process group of pid (field 5 of /proc/PID/stat) and
// whether pid is a live process (not a zombie).
func pgrpOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 || f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, false
	}
	g, err := strconv.Atoi(string(f[2]))
	return g, err == nil
}

// Holds reports whether pid is a live member of the group.
func (g Group) Holds(pid int) bool {
	if g.Cgroup != "" {
		pids, _ := g.members()
		for _, p := range pids {
			if p == pid {
				return true
			}
		}
		return false
	}
	pg, live := pgrpOf(pid)
	return live && pg == g.PGID
}

// killRound SIGKILLs the members it finds and waits for them to go. It
// returns the members it found; none means the group is empty.
func (g Group) killRound(deadline time.Time) ([]int, error) {
	pids, err := g.members()
	if err != nil || len(pids) == 0 {
		return nil, err
	}
	// A pidfd pins each process, so the wait below is for that process
	// even if its pid is reused, and a signal through it cannot reach
	// another.
	var fds []unix.PollFd
	defer func() {
		for _, f := range fds {
			unix.Close(int(f.Fd))
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		if g.Cgroup == "" {
			// Still in the group now that it is pinned?
			if pg, live := pgrpOf(pid); !live || pg != g.PGID {
				unix.Close(fd)
				continue
			}
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	if g.Cgroup != "" {
		if err := g.Signal(syscall.SIGKILL); err != nil {
			return pids, err
		}
	}
	for _, f := range fds {
		_ = unix.PidfdSendSignal(int(f.Fd), unix.SIGKILL, nil, 0)
	}
	// Wait until every pinned process has died.
	for len(fds) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err != nil && err != unix.EINTR {
			return pids, fmt.Errorf("wait for the VM's processes: %w", err)
		}
		if n <= 0 {
			continue
		}
		kept := fds[:0]
		for _, f := range fds {
			if f.Revents != 0 {
				unix.Close(int(f.Fd))
				continue
			}
			kept = append(kept, f)
		}
		fds = kept
	}
	return pids, nil
}

// Remove deletes the group's cgroup, which must be empty. Without one it
// does nothing.
func (g Group) Remove() error {
	if g.Cgroup == "" {
		return nil
	}
	var err error
	// The kernel may take a moment to let go of processes that have
	// just died.
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(g.Cgroup)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove the VM's cgroup %s: %w", g.Cgroup, err)
}

// cgroupParent is where the VMs' cgroups go: under the daemon's own cgroup
// in the cgroup v2 hierarchy. It is "" when there is none the daemon may
// use (not root, no cgroup2 mount). Neither the mount nor the daemon's own
// cgroup changes while it runs, so it is found once, not at every launch.
var cgroupParent = sync.OnceValue(findCgroupParent)

func findCgroupParent() string {
	if os.Geteuid() != 0 {
		return ""
	}
	mnt := cgroup2Mount()
	if mnt == "" {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if own, ok := strings.CutPrefix(line, "0::"); ok {
			dir := filepath.Join(mnt, filepath.Clean("/"+own))
			if unix.Access(dir, unix.W_OK) != nil {
				return ""
			}
			return dir
		}
	}
	return ""
}

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted: the
// unified /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts.
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options... - fstype ...
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" && pf[3] == "/" {
			return pf[4]
		}
	}
	return ""
}

// MakeCgroup creates a fresh cgroup for the processes of a VM named name
// (Config.Cgroup), under the daemon's own in the cgroup v2 hierarchy. It
// returns "" when cgroups cannot be used here (not root, no cgroup2
// mount): the VM then has its process group only.
func MakeCgroup(name string) string {
	parent := cgroupParent()
	if parent == "" {
		return ""
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	dir := filepath.Join(parent, "vm-"+cgroupSafe(name)+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return ""
	}
	return dir
}

// cgroupSafe makes a VM name usable in a cgroup's directory name.
func cgroupSafe(name string) string {
	var sb strings.Builder
	for _, r := range name {
		if r == '/' || r < ' ' || r == 0x7f {
			r = '_'
		}
		sb.WriteRune(r)
	}
	s := sb.String()
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

// intoCgroup makes the process start in the cgroup open as f.
func intoCgroup(attr *syscall.SysProcAttr, f *os.File) {
	attr.UseCgroupFD = true
	attr.CgroupFD = int(f.Fd())
}
