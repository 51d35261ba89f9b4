package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Find returns the path of the hook for state in scriptPath. A missing hook
// is not an error: Find returns "" and nil, and the caller skips the step.
// Every other problem is an error wrapping one of the package's sentinels,
// whose text names the file and says what to do.
//
// With strict set, the hook file (the target, if it is a symbolic link) and
// the directory holding it must be owned by root (or by the daemon's own
// user) and must not be writable by group or others; the check walks no
// higher than scriptPath, so a script directory under /tmp is fine as long
// as the directory itself is safe.
func Find(scriptPath, state string, strict bool) (string, error) {
	if err := checkState(state); err != nil {
		return "", err
	}
	if scriptPath == "" || !filepath.IsAbs(scriptPath) {
		return "", &hookError{ErrInvalid, fmt.Sprintf("hook directory %q is not an absolute path: set scriptpath to an absolute path", scriptPath)}
	}
	dirInfo, err := os.Stat(scriptPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", &hookError{ErrNoScriptDir, fmt.Sprintf("hook directory %s does not exist: create it or fix scriptpath", scriptPath)}
	case err != nil:
		return "", &hookError{ErrNoScriptDir, fmt.Sprintf("hook directory %s cannot be read: %v", scriptPath, err)}
	case !dirInfo.IsDir():
		return "", &hookError{ErrNoScriptDir, fmt.Sprintf("hook directory %s is not a directory: fix scriptpath", scriptPath)}
	}

	path := filepath.Join(scriptPath, state)
	linfo, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", &hookError{ErrNotRegular, fmt.Sprintf("hook %s cannot be examined: %v", path, err)}
	}
	info := linfo
	target := path
	if linfo.Mode()&fs.ModeSymlink != 0 {
		info, err = os.Stat(path)
		if err != nil {
			dest, _ := os.Readlink(path)
			if errors.Is(err, fs.ErrNotExist) {
				return "", &hookError{ErrDanglingLink, fmt.Sprintf("hook %s is a symbolic link to %s, which does not exist: fix or remove the link", path, dest)}
			}
			return "", &hookError{ErrDanglingLink, fmt.Sprintf("hook %s is a symbolic link to %s, which cannot be followed: %v", path, dest, err)}
		}
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return "", &hookError{ErrDanglingLink, fmt.Sprintf("hook %s is a symbolic link that cannot be resolved: %v", path, err)}
		}
	}
	switch {
	case info.IsDir():
		return "", &hookError{ErrIsDirectory, fmt.Sprintf("hook %s is a directory, not an executable file: remove it or replace it with a script", path)}
	case !info.Mode().IsRegular():
		return "", &hookError{ErrNotRegular, fmt.Sprintf("hook %s is not a regular file (%s): replace it with an executable script", path, fileKind(info.Mode()))}
	case info.Mode().Perm()&0o111 == 0:
		return "", &hookError{ErrNotExecutable, fmt.Sprintf("hook %s is not executable: run chmod +x %s", path, path)}
	}

	if strict {
		if err := checkSafe("hook", target, info); err != nil {
			return "", err
		}
		if err := checkSafe("hook directory", scriptPath, dirInfo); err != nil {
			return "", err
		}
		if dir := filepath.Dir(target); dir != filepath.Clean(scriptPath) {
			di, err := os.Stat(dir)
			if err != nil {
				return "", &hookError{ErrInsecure, fmt.Sprintf("hook %s: directory %s of its link target cannot be examined: %v", path, dir, err)}
			}
			if err := checkSafe("hook target directory", dir, di); err != nil {
				return "", err
			}
		}
	}
	return path, nil
}

// checkState accepts a state name only if it is a plain file name, so a
// hook can never be looked up outside its directory.
func checkState(state string) error {
	if state == "" || state == "." || state == ".." || strings.ContainsAny(state, "/\x00") {
		return &hookError{ErrInvalid, fmt.Sprintf("hook state %q is not a plain file name", state)}
	}
	return nil
}

// checkSafe refuses a file or directory that someone other than root (or
// the daemon's own user) could change.
func checkSafe(what, path string, info fs.FileInfo) error {
	perm := info.Mode().Perm()
	switch perm & 0o022 {
	case 0o022:
		return &hookError{ErrInsecure, fmt.Sprintf("%s %s is refused: it is writable by group and others (mode %04o): run chmod go-w %s", what, path, perm, path)}
	case 0o020:
		return &hookError{ErrInsecure, fmt.Sprintf("%s %s is refused: it is writable by its group (mode %04o): run chmod g-w %s", what, path, perm, path)}
	case 0o002:
		return &hookError{ErrInsecure, fmt.Sprintf("%s %s is refused: it is writable by others (mode %04o): run chmod o-w %s", what, path, perm, path)}
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return &hookError{ErrInsecure, fmt.Sprintf("%s %s is refused: its owner cannot be determined", what, path)}
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return &hookError{ErrInsecure, fmt.Sprintf("%s %s is refused: it is owned by uid %d, not root: run chown root %s", what, path, uid, path)}
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.String()
	}
}
