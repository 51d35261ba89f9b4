package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxSocketPath is the longest path a unix socket can be bound to here:
// the kernel's sockaddr_un path (108 bytes on Linux, 104 on FreeBSD),
// less the terminating NUL. A longer one fails to bind with a bare
// "invalid argument".
var MaxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// Paths are the places vmstated reads and writes. The zero value is not
// useful; start from DefaultPaths and override fields from flags.
type Paths struct {
	// ConfigDir holds one subdirectory per VM (config file and hooks).
	ConfigDir string
	// LogDir holds the daemon's and the VMs' log files.
	LogDir string
	// StateDir holds persisted VM state that survives daemon restarts.
	StateDir string
	// RunDir holds per-VM runtime files: monitor and console sockets.
	RunDir string
	// Socket is the control socket vmstatedctl connects to.
	Socket string
	// Pidfile is locked for the daemon's lifetime (see LockPidfile).
	Pidfile string
}

// Absolute returns p with every relative path made absolute against the
// current directory. The daemon hands these paths to processes that run
// elsewhere (QEMU writes its pidfile and sockets under RunDir, hooks run
// in the VM's directory), where a relative path names another place.
func (p Paths) Absolute() (Paths, error) {
	for _, f := range []*string{&p.ConfigDir, &p.LogDir, &p.StateDir, &p.RunDir, &p.Socket, &p.Pidfile} {
		if *f == "" || filepath.IsAbs(*f) {
			continue
		}
		abs, err := filepath.Abs(*f)
		if err != nil {
			return p, fmt.Errorf("making %s absolute: %w", *f, err)
		}
		*f = abs
	}
	return p, nil
}

// DefaultPaths returns the default locations for a daemon running with
// effective uid euid on goos, reading environment variables through env
// (os.Getenv in production). It does not touch the file system.
//
// Root (euid 0):
//
//	            linux                  freebsd
//	ConfigDir   /etc/vmstated          /usr/local/etc/vmstated
//	LogDir      /var/log/vmstated      /var/log/vmstated
//	StateDir    /var/lib/vmstated      /var/lib/vmstated
//	RunDir      /run/vmstated          /var/run/vmstated
//	Socket      /run/vmstated.sock     /var/run/vmstated.sock
//	Pidfile     /run/vmstated.pid      /var/run/vmstated.pid
//
// Other users follow the XDG base directory conventions:
//
//	ConfigDir   $XDG_CONFIG_HOME/vmstated   (default ~/.config/vmstated)
//	StateDir    $XDG_STATE_HOME/vmstated    (default ~/.local/state/vmstated)
//	LogDir      StateDir/log
//	RunDir      $XDG_RUNTIME_DIR/vmstated   (default $TMPDIR/vmstated-<uid>,
//	                                         $TMPDIR defaulting to /tmp)
//	Socket      RunDir/vmstated.sock
//	Pidfile     RunDir/vmstated.pid
//
// XDG variables that are empty or hold a relative path are ignored, as the
// XDG specification requires. When HOME is needed but unset or relative,
// ConfigDir and StateDir (and so LogDir) are left empty and Ensure reports
// what to set.
func DefaultPaths(euid int, goos string, env func(string) string) Paths {
	if euid == 0 {
		run := "/run"
		etc := "/etc/vmstated"
		if goos == "freebsd" {
			run = "/var/run"
			etc = "/usr/local/etc/vmstated"
		}
		return Paths{
			ConfigDir: etc,
			LogDir:    "/var/log/vmstated",
			StateDir:  "/var/lib/vmstated",
			RunDir:    run + "/vmstated",
			Socket:    run + "/vmstated.sock",
			Pidfile:   run + "/vmstated.pid",
		}
	}

	home := absOrEmpty(env("HOME"))
	xdg := func(name, homeRel string) string {
		if dir := absOrEmpty(env(name)); dir != "" {
			return filepath.Join(dir, "vmstated")
		}
		if home == "" {
			return ""
		}
		return filepath.Join(home, homeRel, "vmstated")
	}

	var p Paths
	p.ConfigDir = xdg("XDG_CONFIG_HOME", ".config")
	p.StateDir = xdg("XDG_STATE_HOME", filepath.Join(".local", "state"))
	if p.StateDir != "" {
		p.LogDir = filepath.Join(p.StateDir, "log")
	}
	if dir := absOrEmpty(env("XDG_RUNTIME_DIR")); dir != "" {
		p.RunDir = filepath.Join(dir, "vmstated")
	} else {
		tmp := absOrEmpty(env("TMPDIR"))
		if tmp == "" {
			tmp = "/tmp"
		}
		p.RunDir = filepath.Join(tmp, "vmstated-"+strconv.Itoa(euid))
	}
	p.Socket = filepath.Join(p.RunDir, "vmstated.sock")
	p.Pidfile = filepath.Join(p.RunDir, "vmstated.pid")
	return p
}

func absOrEmpty(dir string) string {
	if dir == "" || !filepath.IsAbs(dir) {
		return ""
	}
	return filepath.Clean(dir)
}

// Directory modes used by Ensure. Logs are readable by root's group so an
// operator group can follow them; state and runtime files (monitor sockets
// give full control over a VM) stay private. A non-root daemon keeps
// everything private.
const (
	rootLogMode   fs.FileMode = 0o750
	privateMode   fs.FileMode = 0o700
	rootParentMod fs.FileMode = 0o755
)

// Ensure prepares the file system for a daemon with these paths, running
// with the current effective uid:
//
//   - ConfigDir must already exist. It is not created, so that a mistyped
//     -c fails loudly instead of starting a daemon with no VMs.
//   - LogDir, StateDir and RunDir are created when missing: LogDir 0750 for
//     root and 0700 otherwise, StateDir and RunDir 0700.
//   - Socket fits a unix socket address: MaxSocketPath bytes at most.
//   - The directories holding Socket and Pidfile are created when missing
//     (0755 for root, 0700 otherwise).
//   - LogDir, StateDir and RunDir must be real directories (not symlinks),
//     owned by the effective uid and not writable by group or others. This
//     matters most for the RunDir fallback under a shared temporary
//     directory, where another user could have created it first.
//
// Existing directories are never chmod-ed; a directory failing the checks is
// reported with what to do about it.
func (p Paths) Ensure() error {
	euid := os.Geteuid()
	for _, f := range []struct{ name, dir, fix string }{
		{"config dir", p.ConfigDir, "set HOME or XDG_CONFIG_HOME, or pass -c"},
		{"log dir", p.LogDir, "set HOME or XDG_STATE_HOME, or pass -l"},
		{"state dir", p.StateDir, "set HOME or XDG_STATE_HOME, or pass -S"},
		{"run dir", p.RunDir, "set XDG_RUNTIME_DIR"},
		{"socket", p.Socket, "pass -s"},
		{"pidfile", p.Pidfile, "pass -p"},
	} {
		if f.dir == "" {
			return fmt.Errorf("no %s: %s", f.name, f.fix)
		}
	}

	if n := len(p.Socket); n > MaxSocketPath {
		return fmt.Errorf("socket path %s is %d bytes long, and a unix socket path has at most %d bytes on this system: pass a shorter one with -s", p.Socket, n, MaxSocketPath)
	}

	st, err := os.Stat(p.ConfigDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("config dir %s does not exist: create it (one subdirectory per VM) or pass -c", p.ConfigDir)
	case err != nil:
		return fmt.Errorf("config dir: %w", err)
	case !st.IsDir():
		return fmt.Errorf("config dir %s is not a directory: pass -c with a directory", p.ConfigDir)
	}

	logMode := privateMode
	parentMode := privateMode
	if euid == 0 {
		logMode = rootLogMode
		parentMode = rootParentMod
	}
	for _, d := range []struct {
		name, dir string
		mode      fs.FileMode
	}{
		{"log dir", p.LogDir, logMode},
		{"state dir", p.StateDir, privateMode},
		{"run dir", p.RunDir, privateMode},
	} {
		if err := os.MkdirAll(d.dir, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", d.name, err)
		}
		if err := checkOwnDir(d.name, d.dir, euid); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, path string }{
		{"socket", p.Socket},
		{"pidfile", p.Pidfile},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), parentMode); err != nil {
			return fmt.Errorf("create directory for %s: %w", f.name, err)
		}
	}
	return nil
}

// checkOwnDir refuses a directory that someone else could have planted or
// can write into.
func checkOwnDir(name, dir string, euid int) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s %s is a symlink: remove it or pass a real directory", name, dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s %s is not a directory: remove it or pass another path", name, dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != euid {
		return fmt.Errorf("%s %s is owned by uid %d, not %d: remove it or pass another path", name, dir, sys.Uid, euid)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s %s has mode %#o, writable by others: chmod go-w it", name, dir, perm)
	}
	return nil
}
