// Package hooks finds and runs a VM's hook scripts: the executables named
// after lifecycle states (start_network, stop_storage, ...) in the VM's
// script directory.
//
// The contract, in short:
//
//   - The hook for a state is <scriptpath>/<state>. A missing file means the
//     step has nothing to do and is skipped. A file that is there but cannot
//     be run (not executable, a directory, a dangling link, not a regular
//     file) is a failure, with a reason that says what to fix.
//   - In strict mode (the default when the daemon runs as root) the hook
//     must pass the rule of package trust: it, every directory on its path
//     from /, every directory on the way to a link's target, and a script's
//     #! interpreter must be owned by root (or the daemon's own user) and
//     not be writable by group or others (a root-owned sticky directory
//     such as /tmp is accepted on the way). A hook that fails is refused;
//     the reason names the file or directory and the fault. Like sshd's
//     StrictModes, this stops anyone who can edit a hook from gaining root
//     through it.
//   - What runs is the file that was checked: the hook is opened once and
//     executed through that descriptor (/proc/self/fd/N), so swapping a
//     file or a directory link after the check changes nothing. A script
//     (#!) is run by executing its checked interpreter the same way, with
//     the script as /dev/fd/N: that is the script's $0, and
//     VMSTATED_HOOK holds the hook's path. /proc must be mounted; where
//     there is no /proc/self/fd (FreeBSD), the hook runs by its path, which
//     the strict check found changeable by root alone.
//   - The hook runs as `<hook> <vm-name> <state>` in the VM's config
//     directory with stdin from /dev/null and a clean environment (see Env)
//     plus VMSTATED_HOOK.
//   - Its stdout and stderr reach the caller's writer (the VM's log) one line
//     per Write call, each line prefixed with the hook's tag (see
//     Request.Output). Lines of the two streams never mix, a line longer
//     than MaxLine is delivered in MaxLine pieces, and a last line without
//     a newline is delivered too.
//   - Exit status 0 is success; any other status, a signal, a timeout or a
//     cancellation is a failure.
//   - On timeout or cancellation the hook's process group gets SIGTERM, then
//     SIGKILL after a grace period if the hook, or anything else in its
//     group, is still there. Run waits for the hook process to exit, not
//     for its output pipes to close: a background process that keeps
//     them open does not hold the caller up. (A process the hook moved
//     into a session or group of its own escapes these signals.)
//   - Processes a successful hook leaves behind (a daemon it started on
//     purpose, such as dnsmasq for the VM's network) are left running and
//     are not waited for. Their output is read and thrown away once the hook
//     has exited, so that they never block on a full pipe or die of SIGPIPE;
//     a daemon should still send its output elsewhere.
//
// Run holds no package-level lock: any number of hooks, for any number of
// VMs, can run at the same time, and a slow hook delays only its caller.
package hooks

import (
	"errors"
	"os"
	"time"
)

// Defaults for a Request's zero fields, and fixed limits.
const (
	// DefaultTimeout is how long a hook may run before it is stopped
	// (the config's hook_timeout default).
	DefaultTimeout = 60 * time.Second
	// DefaultGrace is how long a hook has to exit after SIGTERM before its
	// process group gets SIGKILL.
	DefaultGrace = 5 * time.Second
	// MaxLine is the longest piece of output written as one line. Longer
	// lines are split into pieces of this size; nothing is dropped.
	MaxLine = 64 * 1024
	// PATH is the search path every hook gets.
	PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// drainLimit bounds how long Run keeps reading output that was already
// written when the hook exited. Only a background process that writes
// without pause can reach it.
const drainLimit = 2 * time.Second

// Sentinel errors. Errors returned by Find and carried in Result.Err wrap
// one of these, so callers can tell the cases apart with errors.Is; their
// text names the file and what to do about it.
var (
	// ErrInvalid means the request itself is wrong (empty VM name, a state
	// name that is not a plain file name, a relative script path).
	ErrInvalid = errors.New("invalid hook request")
	// ErrNoScriptDir means the script directory does not exist.
	ErrNoScriptDir = errors.New("hook directory does not exist")
	// ErrNotExecutable means the hook file has no execute permission.
	ErrNotExecutable = errors.New("hook is not executable")
	// ErrIsDirectory means the hook path is a directory.
	ErrIsDirectory = errors.New("hook is a directory")
	// ErrDanglingLink means the hook is a symbolic link whose target does
	// not exist.
	ErrDanglingLink = errors.New("hook is a dangling symbolic link")
	// ErrNotRegular means the hook is a device, socket, FIFO or similar.
	ErrNotRegular = errors.New("hook is not a regular file")
	// ErrInsecure means strict mode refused the hook because of its owner
	// or permissions, or those of its directory.
	ErrInsecure = errors.New("hook refused: unsafe owner or permissions")
	// ErrStart means the hook could not be started (exec failed).
	ErrStart = errors.New("hook could not be started")
	// ErrFailed means the hook ran and exited non-zero or died of a signal.
	ErrFailed = errors.New("hook failed")
	// ErrTimeout means the hook ran past its timeout and was stopped.
	ErrTimeout = errors.New("hook timed out")
	// ErrCanceled means the caller's context ended while the hook ran (or
	// before it started); the hook was stopped like on a timeout.
	ErrCanceled = errors.New("hook canceled")
)

// Strictness selects whether Run checks owner and permissions of a hook.
type Strictness int

const (
	// StrictAuto checks when the daemon's effective uid is 0.
	StrictAuto Strictness = iota
	// StrictOn always checks.
	StrictOn
	// StrictOff never checks.
	StrictOff
)

// Enabled reports whether checks are on for this process.
func (s Strictness) Enabled() bool {
	switch s {
	case StrictOn:
		return true
	case StrictOff:
		return false
	default:
		return os.Geteuid() == 0
	}
}

// hookError is an error with a full, user-facing message that still
// matches its sentinel with errors.Is.
type hookError struct {
	kind error
	msg  string
}

func (e *hookError) Error() string { return e.msg }
func (e *hookError) Unwrap() error { return e.kind }
