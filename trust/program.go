package trust

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Program is an executable opened under the rule, ready to be run through
// its descriptor. For a script (a file starting with "#!") the interpreter
// is opened under the rule too, and it is the interpreter that runs, with
// the script handed to it as /dev/fd/N: the kernel would otherwise look
// the interpreter up by name, and the interpreter would open the script by
// name again, after the check.
type Program struct {
	// Path is the program's path as asked for.
	Path string
	// File is the program, open for reading.
	File *os.File
	// Interp is the interpreter of a script, nil for a binary.
	Interp *os.File
	// InterpPath is the interpreter's path from the #! line.
	InterpPath string
	// InterpArg is the optional argument on the #! line.
	InterpArg string
}

// shebangMax is how much of a script's first line the kernel reads.
const shebangMax = 256

// OpenProgram opens the program at path under the rule (when strict),
// and, when it is a script, its interpreter. A script whose interpreter is
// itself a script is refused: the kernel would look the second interpreter
// up by name.
func OpenProgram(path string, strict bool) (*Program, error) {
	f, err := Open(path, strict)
	if err != nil {
		return nil, err
	}
	p := &Program{Path: path, File: f}
	interp, arg, ok, err := shebang(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !ok {
		return p, nil
	}
	if !strings.HasPrefix(interp, "/") {
		f.Close()
		return nil, &Error{Path: path, Component: path, kind: ErrUntrusted,
			Problem: fmt.Sprintf("its #! line names %q, not an absolute path: name the interpreter by its full path", interp)}
	}
	in, err := Open(interp, strict)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: the interpreter on its #! line: %w", path, err)
	}
	if _, _, nested, _ := shebang(in); nested {
		f.Close()
		in.Close()
		return nil, &Error{Path: path, Component: interp, kind: ErrUntrusted,
			Problem: fmt.Sprintf("its interpreter %s is itself a script: name a binary interpreter on the #! line", interp)}
	}
	p.Interp, p.InterpPath, p.InterpArg = in, interp, arg
	return p, nil
}

// shebang reads a #! line the way Linux does: the interpreter is the first
// word, and the rest of the line, trimmed, is one optional argument.
func shebang(f *os.File) (interp, arg string, ok bool, err error) {
	buf := make([]byte, shebangMax)
	n, err := f.ReadAt(buf, 0)
	if n < 2 || string(buf[:2]) != "#!" {
		return "", "", false, nil
	}
	line := buf[2:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	s := strings.Trim(string(line), " \t")
	if s == "" {
		return "", "", false, nil
	}
	interp = s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		interp, arg = s[:i], strings.Trim(s[i+1:], " \t")
	}
	return interp, arg, true, nil
}

// Close closes the program's descriptors.
func (p *Program) Close() {
	p.File.Close()
	if p.Interp != nil {
		p.Interp.Close()
	}
}

// Command returns what a child process must execute to run the program
// with args, given that Files() are passed to it as descriptors first, first
// ... (os/exec's ExtraFiles from descriptor first on): the path to execve,
// argv, and the files. A binary runs as /proc/self/fd/N with argv[0] its
// own path; a script's interpreter runs the same way with the script as
// /dev/fd/M, which is what the script sees as $0. Where the system has no
// /proc/self/fd to execute (FreeBSD without linprocfs), the program runs by
// its path, which the walk found changeable by root alone.
func (p *Program) Command(first int, args []string) (path string, argv []string, files []*os.File) {
	if !execByDescriptor {
		// The walk checked every directory on the path: only root can
		// change what the name means between the check and exec.
		return p.Path, append([]string{p.Path}, args...), nil
	}
	fd := func(i int) string { return strconv.Itoa(first + i) }
	if p.Interp == nil {
		return "/proc/self/fd/" + fd(0), append([]string{p.Path}, args...), []*os.File{p.File}
	}
	argv = []string{p.InterpPath}
	if p.InterpArg != "" {
		argv = append(argv, p.InterpArg)
	}
	argv = append(argv, "/dev/fd/"+fd(1))
	return "/proc/self/fd/" + fd(0), append(argv, args...), []*os.File{p.Interp, p.File}
}

// CheckProgram applies the rule, when strict, to the program prog names
// (a bare name is looked up in PATH), as a driver does right before it
// runs one: the config's load checked it too, but a directory on its path
// may have been handed to a user since. A program that is not there
// passes: starting it reports that.
func CheckProgram(prog string) error {
	if !Strict() {
		return nil
	}
	path := prog
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil {
			return nil
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s: %w", prog, err)
	}
	p, err := OpenProgram(abs, true)
	if err != nil {
		if IsNotExist(err) {
			return nil
		}
		return err
	}
	p.Close()
	return nil
}
