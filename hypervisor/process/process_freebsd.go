//go:build freebsd

package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/hypervisor"
)

// attachHandle is the kqueue watching an attached process.
type attachHandle struct {
	kq int
}

// Layout of struct kinfo_proc on 64-bit FreeBSD (sys/user.h).
const (
	kinfoProcSize   = 1088
	kinfoOffPid     = 72
	kinfoOffStart   = 336 // struct timeval ki_start
	kinfoOffStat    = 388 // char ki_stat
	kinfoStatZombie = 5   // SZOMB
)

// StartTimeOf returns the start time of process pid: ki_start from
// sysctl kern.proc.pid.PID, in microseconds since the epoch. The error
// wraps hypervisor.ErrGone when there is no such process.
func StartTimeOf(pid int) (uint64, error) {
	st, _, err := statOf(pid)
	return st, err
}

// Running reports whether pid is a live process (not a zombie) with the
// given start time.
func Running(pid int, startTime uint64) bool {
	st, state, err := statOf(pid)
	return err == nil && st == startTime && state != kinfoStatZombie
}

func statOf(pid int) (uint64, byte, error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("pid %d: %w: not a valid pid", pid, hypervisor.ErrGone)
	}
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return 0, 0, fmt.Errorf("pid %d: reading kinfo_proc is only implemented on 64-bit FreeBSD", pid)
	}
	b, err := unix.SysctlRaw("kern.proc.pid", pid)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, fmt.Errorf("pid %d: %w", pid, hypervisor.ErrGone)
		}
		return 0, 0, fmt.Errorf("sysctl kern.proc.pid.%d: %w", pid, err)
	}
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, hypervisor.ErrGone)
	}
	if len(b) < kinfoProcSize {
		return 0, 0, fmt.Errorf("sysctl kern.proc.pid.%d: short kinfo_proc (%d bytes)", pid, len(b))
	}
	if got := int32(binary.LittleEndian.Uint32(b[kinfoOffPid:])); got != int32(pid) {
		return 0, 0, fmt.Errorf("sysctl kern.proc.pid.%d: kinfo_proc names pid %d", pid, got)
	}
	sec := binary.LittleEndian.Uint64(b[kinfoOffStart:])
	usec := binary.LittleEndian.Uint64(b[kinfoOffStart+8:])
	return sec*1000000 + usec, b[kinfoOffStat], nil
}

func (p *Process) attach() error {
	kq, err := unix.Kqueue()
	if err != nil {
		return fmt.Errorf("attach to pid %d: kqueue: %w", p.pid, err)
	}
	ev := []unix.Kevent_t{{}}
	unix.SetKevent(&ev[0], p.pid, unix.EVFILT_PROC, unix.EV_ADD|unix.EV_ONESHOT)
	ev[0].Fflags = unix.NOTE_EXIT
	if _, err := unix.Kevent(kq, ev, nil, nil); err != nil {
		unix.Close(kq)
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("attach to pid %d: %w", p.pid, hypervisor.ErrGone)
		}
		return fmt.Errorf("attach to pid %d: kevent: %w", p.pid, err)
	}
	st, state, err := statOf(p.pid)
	if err == nil && st != p.startTime {
		err = fmt.Errorf("attach to pid %d: %w: the pid now belongs to another process (start time %d, want %d)",
			p.pid, hypervisor.ErrGone, st, p.startTime)
	}
	if err == nil && state == kinfoStatZombie {
		err = fmt.Errorf("attach to pid %d: %w: it has exited", p.pid, hypervisor.ErrGone)
	}
	if err != nil {
		unix.Close(kq)
		return err
	}
	p.attached.kq = kq
	go p.watch(kq)
	return nil
}

// watch blocks in kevent until NOTE_EXIT fires; its data is the exit
// status in wait(2)'s format, for any process, child or not.
func (p *Process) watch(kq int) {
	out := make([]unix.Kevent_t, 1)
	for {
		n, err := unix.Kevent(kq, nil, out, nil)
		if n > 0 && out[0].Fflags&unix.NOTE_EXIT != 0 {
			ws := syscall.WaitStatus(out[0].Data)
			if ws.Signaled() {
				p.finish(Status{Code: -1, Signal: ws.Signal(), Known: true})
			} else {
				p.finish(Status{Code: ws.ExitStatus(), Known: true})
			}
			return
		}
		if err != nil && err != unix.EINTR {
			p.finish(Status{Code: -1, Why: "kevent: " + err.Error()})
			return
		}
	}
}

// releaseAttached closes the kqueue; p.mu is held.
func (p *Process) releaseAttached() {
	if p.attached.kq > 0 {
		unix.Close(p.attached.kq)
		p.attached.kq = 0
	}
}

// signalAttached checks the start time again right before kill(2), which
// narrows (but on FreeBSD cannot close) the window for pid reuse; p.mu is
// held.
func (p *Process) signalAttached(sig syscall.Signal) error {
	st, _, err := statOf(p.pid)
	if errors.Is(err, hypervisor.ErrGone) || (err == nil && st != p.startTime) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := unix.Kill(p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// reapWhenExited reaps child once it has exited; the wait blocks a
// thread while the process runs.
func (p *Process) reapWhenExited(child *os.Process) { go p.reap(child) }

// DupFD is implemented on Linux only (pidfd_getfd).
func (p *Process) DupFD(fd int) (*os.File, error) {
	return nil, fmt.Errorf("descriptor %d of pid %d: %w: taking a descriptor from another process needs Linux", fd, p.pid, hypervisor.ErrNotSupported)
}
