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

// attachHandle is the pidfd of an attached process, open while open is
// true.
type attachHandle struct {
	pidfd int
	open  bool
	own   bool // the daemon started the process: it reaps it by pid
}

// StartTimeOf returns the start time of process pid: field 22 of
// /proc/PID/stat, in clock ticks since boot. The error wraps
// hypervisor.ErrGone when there is no such process.
func StartTimeOf(pid int) (uint64, error) {
	st, _, err := statOf(pid)
	return st, err
}

// Running reports whether pid is a live process (not a zombie) with the
// given start time.
func Running(pid int, startTime uint64) bool {
	st, state, err := statOf(pid)
	return err == nil && st == startTime && state != 'Z' && state != 'X'
}

// statOf reads the start time and the state letter of pid.
func statOf(pid int) (uint64, byte, error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("pid %d: %w: not a valid pid", pid, hypervisor.ErrGone)
	}
	b, err := readProcStat(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return 0, 0, fmt.Errorf("pid %d: %w", pid, hypervisor.ErrGone)
		}
		return 0, 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStat(pid, b)
}

// readProcStat reads /proc/PID/stat with one open, one read and one close
// (a launch reads it twice; os.ReadFile adds a stat and the poller). The
// kernel produces the whole line in one read of a page: the command name
// is at most 16 bytes, and 52 numbers fill well under 4 KiB.
func readProcStat(pid int) ([]byte, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	b := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:n], nil
	}
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
	// Watch for the exit status first: an exit after this point is
	// recorded, one before it fails the checks below.
	codesErr := codes.watch(p.pid)
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		codes.forget(p.pid)
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
		codes.forget(p.pid)
		unix.Close(fd)
		return err
	}
	p.attached = attachHandle{pidfd: fd, open: true}
	// The pidfd becomes readable when the process dies, even while it is
	// a zombie its parent has not reaped. finish closes the pidfd.
	exited := func() {
		if codesErr != nil {
			p.finish(Status{Code: -1, Why: codesErr.Error()})
			return
		}
		p.finish(codes.take(p.pid))
	}
	if exits.add(fd, exited) != nil {
		go func() {
			waitReadable(fd)
			exited()
		}()
	}
	return nil
}

// waitReadable blocks the calling thread until fd is readable; the
// fallback when the shared exit poller cannot be had.
func waitReadable(fd int) {
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, -1)
		if n > 0 || (err != nil && err != unix.EINTR) {
			return
		}
	}
}

// reapWhenExited reaps child, and records its status, once it has exited,
// without a goroutine or thread of its own while it runs: its pidfd waits
// in the shared exit poller, and wait(2) runs only when it will not block.
// Without pidfds a goroutine blocks a thread in wait(2) instead.
//
// The pidfd is the process's only descriptor in the daemon: the runtime's
// own (os.Process keeps one) is released, and this one signals the
// process and reaps it by its pid. Every fork copies the daemon's
// descriptor table and every exec closes the copy, so with a thousand
// VMs a descriptor per VM costs each launch a thousand copies and closes.
func (p *Process) reapWhenExited(child *os.Process) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		go p.reap(child)
		return
	}
	// The child is not reaped before wait4 below, so its pid cannot be
	// reused while the pidfd is taken: it is this process's.
	p.mu.Lock()
	p.attached = attachHandle{pidfd: fd, open: true, own: true}
	p.child = nil
	p.mu.Unlock()
	_ = child.Release()
	if exits.add(fd, p.reapOwn) != nil {
		go func() {
			waitReadable(fd)
			p.reapOwn()
		}()
	}
}

// reapOwn reaps a child whose pidfd said it has exited, and records how
// it ended; finish closes the pidfd.
func (p *Process) reapOwn() {
	var ws unix.WaitStatus
	s := Status{Code: -1}
	for {
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.Why = fmt.Sprintf("wait for pid %d: %v", p.pid, err)
			break
		}
		s.Known = true
		if ws.Signaled() {
			s.Signal = ws.Signal()
		} else {
			s.Code = ws.ExitStatus()
		}
		break
	}
	p.finish(s)
}

// releaseAttached closes the pidfd; p.mu is held.
func (p *Process) releaseAttached() {
	if p.attached.open {
		unix.Close(p.attached.pidfd)
		p.attached = attachHandle{}
	}
}

// signalAttached signals through the pidfd, which cannot reach a process
// that reused the pid; p.mu is held.
func (p *Process) signalAttached(sig syscall.Signal) error {
	if !p.attached.open {
		return nil
	}
	err := unix.PidfdSendSignal(p.attached.pidfd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// DupFD returns a duplicate of descriptor fd of a re-adopted (Attach)
// process (pidfd_getfd(2), Linux 5.6 or later). The caller needs the right to
// ptrace the process: root, or its uid where the ptrace policy allows
// it. The duplicate is close-on-exec and shares the open file (offset,
// flags) with the process's descriptor.
func (p *Process) DupFD(fd int) (*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil, fmt.Errorf("descriptor %d of pid %d: %w", fd, p.pid, hypervisor.ErrExited)
	}
	if !p.attached.open || p.attached.own {
		// The daemon that started a process keeps what it gave it.
		return nil, fmt.Errorf("descriptor %d of pid %d: %w: only a re-adopted process's descriptors are taken", fd, p.pid, hypervisor.ErrNotSupported)
	}
	n, err := unix.PidfdGetfd(p.attached.pidfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d of pid %d: pidfd_getfd (needs Linux 5.6, and ptrace rights over the process: run the daemon as root): %w", fd, p.pid, err)
	}
	return os.NewFile(uintptr(n), fmt.Sprintf("pid %d fd %d", p.pid, fd)), nil
}
