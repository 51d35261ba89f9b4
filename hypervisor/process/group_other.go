//go:build !linux && !freebsd

package process

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
)

// Signal is implemented on Linux and FreeBSD only.
func (g Group) Signal(sig syscall.Signal) error {
	return fmt.Errorf("signal process group %d: %w", g.PGID, hypervisor.ErrNotSupported)
}

// Holds is implemented on Linux and FreeBSD only.
func (g Group) Holds(int) bool { return false }

func (g Group) killRound(time.Time) ([]int, error) { return nil, nil }

func (g Group) members() ([]int, error) { return nil, nil }

// Running is implemented on Linux and FreeBSD only.
func Running(int, uint64) bool { return false }

// Remove does nothing: there are no cgroups here.
func (g Group) Remove() error { return nil }

// MakeCgroup returns "": there are no cgroups here.
func MakeCgroup(string) string { return "" }

func intoCgroup(*syscall.SysProcAttr, *os.File) {}
