package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/vmstated/vmstated/trust"
)

// userDir is the one directory in the run directory that QEMU may write
// to once it has dropped to its user (screendumps). Everything else there
// stays root's: the daemon reads the pidfile and the handle from it, and
// a process running as the user must not be able to replace them.
const userDir = "user"

// checkBinary applies the trust rule to the QEMU binary a root daemon is
// about to run: it and every directory on its path must be root's.
func checkBinary(bin string) error {
	if !trust.Strict() {
		return nil
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("qemu: binary %s: %w", bin, err)
	}
	p, err := trust.OpenProgram(abs, true)
	if err != nil {
		return fmt.Errorf("%w: qemu binary refused: %w", ErrInvalidOptions, err)
	}
	p.Close()
	return nil
}

// prepareUserDir makes <runDir>/user, owned by name, when QEMU drops to
// that user; without a user it does nothing.
func prepareUserDir(runDir, name string) error {
	if name == "" {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("%w: user %q: %w", ErrInvalidOptions, name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := filepath.Join(runDir, userDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("qemu: directory for user %s: %w", name, err)
	}
	// Lchown: never follow a link someone left there.
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("qemu: directory for user %s: %w", name, err)
	}
	// The run directory itself: the user may pass through it, not write.
	if err := os.Chown(runDir, 0, gid); err != nil {
		return fmt.Errorf("qemu: run directory for user %s: %w", name, err)
	}
	return os.Chmod(runDir, 0o750)
}

// scratchDir is where QEMU writes files the daemon reads back.
func scratchDir(runDir string, o Options) string {
	if o.User != "" {
		return filepath.Join(runDir, userDir)
	}
	return runDir
}

// maxScreendump bounds a screendump read back from QEMU.
const maxScreendump = 256 << 20

// readScratch reads a file QEMU wrote, without following a link and only
// if it is a regular file: a QEMU running as its user could have put
// anything at that name.
func readScratch(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxScreendump+1))
	if err == nil && len(b) > maxScreendump {
		err = fmt.Errorf("%s is larger than %d bytes", path, maxScreendump)
	}
	return b, err
}
