//go:build freebsd

package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Signal sends sig to the process group (FreeBSD has no cgroups).
// Signalling a group that is empty is not an error.
func (g Group) Signal(sig syscall.Signal) error {
	if g.PGID <= 0 || !g.ours() {
		return nil
	}
	if err := unix.Kill(-g.PGID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, g.PGID, err)
	}
	return nil
}

// ours reports whether the group number still names this group (see the
// Linux version).
func (g Group) ours() bool {
	st, _, err := statOf(g.PGID)
	return err != nil || st == g.LeaderStart
}

// members returns the live processes of the group.
func (g Group) members() ([]int, error) {
	if g.PGID <= 0 || !g.ours() {
		return nil, nil
	}
	b, err := unix.SysctlRaw("kern.proc.pgrp", g.PGID)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, nil
		}
		return nil, fmt.Errorf("sysctl kern.proc.pgrp.%d: %w", g.PGID, err)
	}
	var pids []int
	for ; len(b) >= kinfoProcSize; b = b[kinfoProcSize:] {
		if b[kinfoOffStat] == kinfoStatZombie {
			continue
		}
		pids = append(pids, int(int32(binary.LittleEndian.Uint32(b[kinfoOffPid:]))))
	}
	return pids, nil
}

// Holds reports whether pid is a live member of the group.
func (g Group) Holds(pid int) bool {
	pids, _ := g.members()
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

// killRound SIGKILLs the group and waits, through one kqueue, for the
// members it found to go.
func (g Group) killRound(deadline time.Time) ([]int, error) {
	pids, err := g.members()
	if err != nil || len(pids) == 0 {
		return nil, err
	}
	kq, err := unix.Kqueue()
	if err != nil {
		return pids, fmt.Errorf("wait for the VM's processes: kqueue: %w", err)
	}
	defer unix.Close(kq)
	waiting := 0
	for _, pid := range pids {
		ev := []unix.Kevent_t{{}}
		unix.SetKevent(&ev[0], pid, unix.EVFILT_PROC, unix.EV_ADD|unix.EV_ONESHOT)
		ev[0].Fflags = unix.NOTE_EXIT
		if _, err := unix.Kevent(kq, ev, nil, nil); err == nil {
			waiting++
		}
	}
	if err := g.Signal(syscall.SIGKILL); err != nil {
		return pids, err
	}
	out := make([]unix.Kevent_t, 16)
	for waiting > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		ts := unix.NsecToTimespec(left.Nanoseconds())
		n, err := unix.Kevent(kq, nil, out, &ts)
		if err != nil && err != unix.EINTR {
			return pids, fmt.Errorf("wait for the VM's processes: %w", err)
		}
		waiting -= max(n, 0)
	}
	return pids, nil
}

// Remove does nothing: there is no cgroup on FreeBSD.
func (g Group) Remove() error { return nil }

// MakeCgroup returns "": there are no cgroups here.
func MakeCgroup(string) string { return "" }

func intoCgroup(*syscall.SysProcAttr, *os.File) {}
