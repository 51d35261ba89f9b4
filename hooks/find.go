package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmstated/vmstated/trust"
)

// Find returns the path of the hook for state in scriptPath. A missing hook
// is not an error: Find returns "" and nil, and the caller skips the step.
// Every other problem is an error wrapping one of the package's sentinels,
// whose text names the file and says what to do.
//
// With strict set, the hook must pass the rule of package trust: the file
// and every directory on its path from / (and on the path of every link
// followed) owned by root (or by the daemon's own user) and not writable
// by group or others; a root-owned sticky directory such as /tmp is
// accepted on the way. Run checks again on the descriptor it executes.
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
	if linfo.Mode()&fs.ModeSymlink != 0 {
		info, err = os.Stat(path)
		if err != nil {
			dest, _ := os.Readlink(path)
			if errors.Is(err, fs.ErrNotExist) {
				return "", &hookError{ErrDanglingLink, fmt.Sprintf("hook %s is a symbolic link to %s, which does not exist: fix or remove the link", path, dest)}
			}
			return "", &hookError{ErrDanglingLink, fmt.Sprintf("hook %s is a symbolic link to %s, which cannot be followed: %v", path, dest, err)}
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
		f, err := trust.Open(path, true)
		if err != nil {
			return "", refusal(path, err)
		}
		f.Close()
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

// refusal turns an error of package trust into the hook's error.
func refusal(path string, err error) error {
	var te *trust.Error
	if errors.As(err, &te) {
		// Its problem names the component; the path is said once.
		err = &wrapped{msg: te.Problem, kind: te.Unwrap()}
	}
	switch {
	case errors.Is(err, trust.ErrUntrusted):
		return &hookError{ErrInsecure, fmt.Sprintf("hook %s is refused: %v", path, err)}
	case errors.Is(err, trust.ErrNotRegular):
		return &hookError{ErrNotRegular, fmt.Sprintf("hook %s cannot be run: %v", path, err)}
	case errors.Is(err, fs.ErrNotExist):
		return &hookError{ErrDanglingLink, fmt.Sprintf("hook %s cannot be opened: %v", path, err)}
	}
	return &hookError{ErrStart, fmt.Sprintf("hook %s cannot be opened: %v", path, err)}
}

// wrapped is a message that still matches its sentinel.
type wrapped struct {
	msg  string
	kind error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.kind }

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
