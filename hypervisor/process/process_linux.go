//go:build linux

package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/hypervisor"
)

// attachHandle is the pidfd of an attached process.
type attachHandle struct {
	pidfd *os.File
}

// StartTimeOf returns the start time of process pid: field 22 of
// /proc/PID/stat, in clock ticks since boot. The error wraps
// hypervisor.ErrGone when there is no such process.
func StartTimeOf(pid int) (uint64, error) {
	st, _, err := statOf(pid)
	return st, err
}

// statOf reads the start time and the state letter of pid.
func statOf(pid int) (uint64, byte, error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("pid %d: %w: not a valid pid", pid, hypervisor.ErrGone)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return 0, 0, fmt.Errorf("pid %d: %w", pid, hypervisor.ErrGone)
		}
		return 0, 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStat(pid, b)
}

// parseStat parses /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted after the last ')'.
func parseStat(pid int, b []byte) (uint64, byte, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat of pid %d: no ')' after the command name", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("stat of pid %d: too few fields (%d after the command name)", pid, len(fields))
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat of pid %d: start time %q: %w", pid, fields[19], err)
	}
	return st, fields[0][0], nil
}

func (p *Process) attach() error {
	fd, err := unix.PidfdOpen(p.pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 5.10 there is no PIDFD_NONBLOCK; watch then
		// blocks a thread in poll instead of using the runtime's epoll.
		fd, err = unix.PidfdOpen(p.pid, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("attach to pid %d: %w", p.pid, hypervisor.ErrGone)
		}
		return fmt.Errorf("attach to pid %d: pidfd_open (needs Linux 5.3 or later): %w", p.pid, err)
	}
	// The pidfd now pins the process we will watch; check that it is the
	// one we want. If the pid was reused before pidfd_open, the start time
	// differs; if it was reused after, the pidfd's process has exited and
	// is gone too.
	st, state, err := statOf(p.pid)
	if err == nil && st != p.startTime {
		err = fmt.Errorf("attach to pid %d: %w: the pid now belongs to another process (start time %d, want %d)",
			p.pid, hypervisor.ErrGone, st, p.startTime)
	}
	if err == nil && (state == 'Z' || state == 'X') {
		err = fmt.Errorf("attach to pid %d: %w: it has exited", p.pid, hypervisor.ErrGone)
	}
	if err != nil {
		unix.Close(fd)
		return err
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(p.pid))
	p.attached.pidfd = f
	go p.watch(f)
	return nil
}

// watch waits for the pidfd to become readable, which happens when the
// process dies (even while it is a zombie not yet reaped by its parent).
// The wait sits in the runtime's epoll: no thread is blocked and nothing
// polls periodically.
func (p *Process) watch(f *os.File) {
	exited := func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	}
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(exited)
	}
	if err != nil {
		// Not pollable through the runtime: block a thread instead.
		for {
			fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, -1)
			if n > 0 || (err != nil && err != unix.EINTR) {
				break
			}
		}
	}
	p.finish(Status{Code: -1})
}

// awaitExit returns once the child pid has exited (it is then a zombie for
// the caller to reap), waiting in the runtime's poller on a pidfd. Without
// pidfds it returns at once and the caller's wait blocks as usual.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	})
}

// releaseAttached closes the pidfd; p.mu is held.
func (p *Process) releaseAttached() {
	if p.attached.pidfd != nil {
		p.attached.pidfd.Close()
		p.attached.pidfd = nil
	}
}

// signalAttached signals through the pidfd, which cannot reach a process
// that reused the pid; p.mu is held.
func (p *Process) signalAttached(sig syscall.Signal) error {
	if p.attached.pidfd == nil {
		return nil
	}
	rc, err := p.attached.pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.ESRCH) {
		return nil
	}
	return serr
}
