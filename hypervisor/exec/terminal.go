package exec

import (
	"github.com/vmstated/vmstated/hypervisor/process"
)

// ConsolePTY is the Options.Console that gives the program a
// pseudo-terminal.
const ConsolePTY = "pty"

// The window size of a new terminal, until a client attaches with its own.
const (
	DefaultRows = 24
	DefaultCols = 80
)

// TerminalFD is the descriptor, in the VM's process, that holds a
// duplicate of the daemon's side of the pseudo-terminal (console = pty).
// The program does not use it; it is there so that the terminal outlives
// the daemon: a pseudo-terminal whose controlling side is closed hangs up
// its program. A new daemon takes it back from the process (see
// process.DupFD). The program must leave it open (a launcher that closes
// every descriptor it did not open loses its console on the next daemon
// restart). It is descriptor 4: descriptor 3 is the launch gate's,
// closed before the program runs (and never open in a program started in
// a cgroup, which needs no gate).
var TerminalFD = process.Config{}.InheritFD(0)
