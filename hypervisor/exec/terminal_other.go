//go:build !linux

package exec

import (
	"fmt"
	"os"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// A terminal that outlives the daemon needs pidfd_getfd(2): Linux only.
var errNoTerminal = fmt.Errorf("%w: exec console = pty needs Linux; remove console = pty from the exec section", hypervisor.ErrNotSupported)

func openTerminal() (master, tty *os.File, err error)               { return nil, nil, errNoTerminal }
func inheritable(master *os.File) (*os.File, error)                 { return nil, errNoTerminal }
func restoreNonblock(master *os.File) error                         { return errNoTerminal }
func takeTerminal(*process.Process, int, *uint32) (*os.File, error) { return nil, errNoTerminal }
func terminalIndex(*os.File) (*uint32, error)                       { return nil, errNoTerminal }
func setWindowSize(*os.File, uint16, uint16) error                  { return errNoTerminal }
