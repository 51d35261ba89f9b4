// Package trust holds the one rule for files a root daemon reads as
// instructions or executes: configs, included files, hypervisor config
// files, programs named in configs, hooks and a script's interpreter.
//
// The rule, modelled on sshd's StrictModes:
//
//   - The file must be a regular file owned by root or by the daemon's own
//     user, and not writable by its group or by others.
//   - Every directory on its path, from / down, and on the path of every
//     symbolic link followed on the way, must be owned by root or the
//     daemon's user and not writable by group or others.
//   - One exception: a directory that is world-writable with the sticky bit
//     set (/tmp) is accepted when root owns it. The sticky bit keeps
//     others from removing or renaming an entry they do not own, and the
//     entry below it must pass the rule on its own, so nobody but its
//     owner can swap it. A symbolic link there is followed only when root
//     (or the daemon's user) owns it, as the kernel's protected_symlinks
//     does: the walk reads links itself, so it has to say so itself.
//
// The rule is checked on what is opened, not on a name: the path is walked
// one component at a time with openat and O_NOFOLLOW, each directory is
// checked through its descriptor (fstat) before the next name is looked up
// in it, symbolic links are read and followed by the walk itself, and the
// caller gets the descriptor of the file that passed. A caller that reads or
// executes that descriptor uses the very inode that was checked; nothing can
// be swapped in between.
//
// Without Strict (a daemon that is not root), only the kind of file is
// checked: regular files, opened without blocking, so that a FIFO or a
// device never hangs or floods the reader.
package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUntrusted is wrapped by every refusal of the rule (owner, mode).
var ErrUntrusted = errors.New("refused by the trust rule")

// ErrNotRegular is wrapped when the file is not a regular file (a FIFO, a
// device, a directory, a socket).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped when a file is larger than the caller's cap.
var ErrTooLarge = errors.New("file too large")

// maxLinks bounds the symbolic links followed in one walk, as the kernel's
// own ELOOP limit does.
const maxLinks = 40

// Strict reports whether the rule applies to this process: when it runs
// as root.
func Strict() bool { return os.Geteuid() == 0 }

// Error is a refusal: which file, which component of its path, and which
// part of the rule it fails.
type Error struct {
	// Path is the file that was asked for.
	Path string
	// Component is the file or directory that fails (Path itself, or a
	// directory on the way).
	Component string
	// Problem says what is wrong and what to do.
	Problem string
	kind    error
}

func (e *Error) Error() string { return e.Path + ": " + e.Problem }

// Unwrap returns the sentinel: ErrUntrusted, ErrNotRegular or the system
// error.
func (e *Error) Unwrap() error { return e.kind }

// Open opens path for reading after walking it under the rule (when strict)
// and returns the file that passed, opened O_RDONLY|O_NONBLOCK|O_CLOEXEC.
// It fails for anything but a regular file, strict or not; a FIFO or a
// device is never read from. path must be absolute.
func Open(path string, strict bool) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, &Error{Path: path, Component: path, Problem: "not an absolute path", kind: ErrNotRegular}
	}
	if !strict {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		f := os.NewFile(uintptr(fd), path)
		if err := checkFile(f, path, path, false); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	w := &walker{want: path}
	return w.walk(path)
}

// walker resolves one path under the rule.
type walker struct {
	want  string // the path asked for, for messages
	links int
}

// walk resolves path from /, one component at a time. It keeps the descriptors of the directories
// it has checked on a stack, so ".." (from a link target) goes back to
// a checked descriptor rather than looking anything up by name.
func (w *walker) walk(path string) (*os.File, error) {
	rootFd, err := unix.Open("/", dirFlags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	type dir struct {
		fd     int
		name   string
		sticky bool // world-writable with the sticky bit
	}
	stack := []dir{{rootFd, "/", false}}
	defer func() {
		for _, d := range stack {
			unix.Close(d.fd)
		}
	}()
	if err := w.checkDir(rootFd, "/"); err != nil {
		return nil, err
	}
	todo := splitPath(path)
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		top := stack[len(stack)-1]
		switch c {
		case ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(top.fd)
				stack = stack[:len(stack)-1]
			}
			continue
		}
		name := filepath.Join(top.name, c)
		// Only root (or the daemon's user) can change the entries of a
		// checked directory, so what fstatat sees here is what openat
		// opens next; the descriptor is checked again all the same.
		var st unix.Stat_t
		if err := unix.Fstatat(top.fd, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, &os.PathError{Op: "open", Path: w.want, Err: err}
		}
		switch uint32(st.Mode) & unix.S_IFMT {
		case unix.S_IFLNK:
			if top.sticky && int(st.Uid) != 0 && int(st.Uid) != os.Geteuid() {
				// Anyone may create a link in /tmp: follow only root's,
				// as the kernel's protected_symlinks does.
				return nil, &Error{Path: w.want, Component: name, kind: ErrUntrusted,
					Problem: fmt.Sprintf("symbolic link %s in the sticky directory %s is owned by uid %d, not root: only root's links are followed there", name, top.name, st.Uid)}
			}
			target, err := readlinkAt(top.fd, c)
			if err != nil {
				return nil, &os.PathError{Op: "readlink", Path: name, Err: err}
			}
			if w.links++; w.links > maxLinks {
				return nil, &os.PathError{Op: "open", Path: w.want, Err: unix.ELOOP}
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack[1:] {
					unix.Close(d.fd)
				}
				stack = stack[:1]
			}
			todo = append(splitPath(target), todo...)
		case unix.S_IFDIR:
			fd, err := unix.Openat(top.fd, c, dirFlags|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, &os.PathError{Op: "open", Path: w.want, Err: err}
			}
			if err := w.checkDir(fd, name); err != nil {
				unix.Close(fd)
				return nil, err
			}
			var dst unix.Stat_t
			_ = unix.Fstat(fd, &dst)
			mode := uint32(dst.Mode)
			stack = append(stack, dir{fd, name, mode&unix.S_ISVTX != 0 && mode&0o002 != 0})
		default:
			if len(todo) > 0 {
				return nil, &os.PathError{Op: "open", Path: name, Err: unix.ENOTDIR}
			}
			// The last component: open it for reading, in the checked
			// directory, without following a link, and check what was
			// opened.
			rfd, err := unix.Openat(top.fd, c, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
			if err != nil {
				return nil, &os.PathError{Op: "open", Path: w.want, Err: err}
			}
			f := os.NewFile(uintptr(rfd), name)
			if err := checkFile(f, w.want, name, true); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
	}
	// The path named a directory (or /).
	return nil, &Error{Path: w.want, Component: w.want, Problem: "is a directory, not a regular file", kind: ErrNotRegular}
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<16 {
			return "", unix.ENAMETOOLONG
		}
		buf = make([]byte, 2*len(buf))
	}
}

func (w *walker) checkDir(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return w.checkStat(&st, name, true)
}

// checkStat applies the owner and mode parts of the rule to one component.
func (w *walker) checkStat(st *unix.Stat_t, name string, isDir bool) error {
	return checkOwnerMode(w.want, name, st, isDir)
}

func checkOwnerMode(want, name string, st *unix.Stat_t, isDir bool) error {
	what := "file"
	if isDir {
		what = "directory"
	}
	uid := int(st.Uid)
	if uid != 0 && uid != os.Geteuid() {
		return &Error{Path: want, Component: name, kind: ErrUntrusted,
			Problem: fmt.Sprintf("%s %s is owned by uid %d, not root: only root may own what a root daemon reads or runs (run chown root %s, or move the file)", what, name, uid, name)}
	}
	perm := uint32(st.Mode) & 0o7777
	sticky := perm&unix.S_ISVTX != 0
	if isDir && sticky && uid == 0 {
		// /tmp and the like: see the package documentation.
		return nil
	}
	var who, fix string
	switch perm & 0o022 {
	case 0o022:
		who, fix = "group and others", "go-w"
	case 0o020:
		who, fix = "its group", "g-w"
	case 0o002:
		who, fix = "others", "o-w"
	default:
		return nil
	}
	return &Error{Path: want, Component: name, kind: ErrUntrusted,
		Problem: fmt.Sprintf("%s %s is writable by %s (mode %04o): only root may be able to change what a root daemon reads or runs (run chmod %s %s)", what, name, who, perm, fix, name)}
}

// checkFile checks the opened file: a regular file, and in strict mode
// owned and moded under the rule.
func checkFile(f *os.File, want, name string, strict bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFREG {
		return &Error{Path: want, Component: name, kind: ErrNotRegular,
			Problem: fmt.Sprintf("%s is %s, not a regular file: only regular files are read", name, kindName(uint32(st.Mode)))}
	}
	if !strict {
		return nil
	}
	return checkOwnerMode(want, name, &st, false)
}

func kindName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	default:
		return fmt.Sprintf("a file of type %#o", mode&unix.S_IFMT)
	}
}

// ReadFile reads path under the rule (when strict), refusing anything but a
// regular file and anything larger than limit bytes. A file that grows
// while it is read is cut off at limit+1 bytes and refused the same way, so
// the read is bounded whatever the file is.
func ReadFile(path string, strict bool, limit int64) ([]byte, error) {
	f, err := Open(path, strict)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	if size > limit {
		return nil, &Error{Path: path, Component: path, kind: ErrTooLarge,
			Problem: fmt.Sprintf("is %d bytes, more than the limit of %d bytes", size, limit)}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &Error{Path: path, Component: path, kind: ErrTooLarge,
			Problem: fmt.Sprintf("is more than the limit of %d bytes", limit)}
	}
	return data, nil
}

// IsNotExist reports whether err says the file (or a directory on its
// path) does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
