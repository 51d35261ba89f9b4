//go:build !linux && !freebsd

package process

import (
	"fmt"
	"os"
	"syscall"

	"github.com/vmstated/vmstated/hypervisor"
)

type attachHandle struct{}

// StartTimeOf is implemented on Linux and FreeBSD only.
func StartTimeOf(pid int) (uint64, error) {
	return 0, fmt.Errorf("start time of pid %d: %w", pid, hypervisor.ErrNotSupported)
}

func (p *Process) attach() error {
	return fmt.Errorf("attach to pid %d: %w", p.pid, hypervisor.ErrNotSupported)
}

func (p *Process) releaseAttached() {}

func (p *Process) signalAttached(sig syscall.Signal) error {
	return hypervisor.ErrNotSupported
}

// reapWhenExited reaps child once it has exited; the wait blocks a
// thread while the process runs.
func (p *Process) reapWhenExited(child *os.Process) { go p.reap(child) }

// DupFD is implemented on Linux only (pidfd_getfd).
func (p *Process) DupFD(fd int) (*os.File, error) {
	return nil, fmt.Errorf("descriptor %d of pid %d: %w: taking a descriptor from another process needs Linux", fd, p.pid, hypervisor.ErrNotSupported)
}
