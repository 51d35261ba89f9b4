//go:build linux

package exec

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/hypervisor/process"
)

// openTerminal makes a pseudo-terminal: the daemon's side (master),
// non-blocking so that its reads and writes can be interrupted and
// bounded, and the program's side (tty), an ordinary blocking terminal.
func openTerminal() (master, tty *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: console = pty: open /dev/ptmx (is devpts mounted?): %w", err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		return nil, nil, fmt.Errorf("exec: console = pty: unlock the terminal: %w", err)
	}
	// TIOCGPTPEER opens the program's side without a path lookup (Linux
	// 4.13), so no other terminal can be slipped in by name.
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		unix.Close(m)
		return nil, nil, fmt.Errorf("exec: console = pty: open the terminal's program side (needs Linux 4.13): %w", errno)
	}
	// Until a client says its size: a terminal of no size makes programs
	// that lay out text misbehave.
	if err := unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, &unix.Winsize{Row: DefaultRows, Col: DefaultCols}); err != nil {
		unix.Close(m)
		unix.Close(int(s))
		return nil, nil, fmt.Errorf("exec: console = pty: set the terminal's size: %w", err)
	}
	return os.NewFile(uintptr(m), "/dev/ptmx"), os.NewFile(s, "pty"), nil
}

// inheritable returns a descriptor of master for the program to inherit.
// Starting a process puts the descriptors it is given in blocking mode,
// which is a flag of the open file they share with the daemon's: the
// daemon's side is made non-blocking again by restoreNonblock.
func inheritable(master *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("exec: console = pty: duplicate the terminal: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// restoreNonblock makes the daemon's side non-blocking again (see
// inheritable).
func restoreNonblock(master *os.File) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), true) }); err != nil {
		return err
	}
	return serr
}

// terminalIndex returns the number of master's terminal (/dev/pts/N).
func terminalIndex(master *os.File) (*uint32, error) {
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n uint32
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("exec: console = pty: the terminal's number: %w", serr)
	}
	return &n, nil
}

// takeTerminal takes the daemon's side of the terminal back from the VM's
// process, which holds a duplicate at descriptor fd. With index set, it
// must be that terminal (see extra.TerminalIndex).
func takeTerminal(p *process.Process, fd int, index *uint32) (*os.File, error) {
	f, err := p.DupFD(fd)
	if err != nil {
		return nil, err
	}
	// A descriptor of its own, made non-blocking before it becomes a
	// File, so that the runtime polls it.
	n, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("duplicate the terminal: %w", err)
	}
	// The descriptor must still be a terminal's controlling side: a
	// program that closed it may have opened something else there.
	got, err := unix.IoctlGetUint32(n, unix.TIOCGPTN)
	if err != nil {
		unix.Close(n)
		return nil, fmt.Errorf("descriptor %d of pid %d is no longer the terminal (did the program close it?): %w", fd, p.PID(), err)
	}
	// A program that closed it may also have opened a terminal of its
	// own there: the console would then read and type into that one.
	// The VM's terminal lives as long as the program keeps its stdio, so
	// its number is not given to another meanwhile.
	if index != nil && got != *index {
		unix.Close(n)
		return nil, fmt.Errorf("descriptor %d of pid %d is another terminal (/dev/pts/%d, not the VM's /dev/pts/%d): the program closed its console's and opened one of its own; it must leave descriptor %d open", fd, p.PID(), got, *index, fd)
	}
	if err := unix.SetNonblock(n, true); err != nil {
		unix.Close(n)
		return nil, fmt.Errorf("duplicate the terminal: %w", err)
	}
	return os.NewFile(uintptr(n), "/dev/ptmx"), nil
}

// setWindowSize sets the terminal's size.
func setWindowSize(master *os.File, rows, cols uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return serr
}
