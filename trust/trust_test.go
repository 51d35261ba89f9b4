package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

func TestOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the rule is about files owned by other users")
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the path to open
		wantErr error
		hint    string // the error names this
	}{
		{name: "root file in root dirs", setup: func(t *testing.T, dir string) string {
			return write(t, dir, "f", 0o644)
		}},
		{name: "file owned by a user", wantErr: ErrUntrusted, hint: "owned by uid 65534", setup: func(t *testing.T, dir string) string {
			p := write(t, dir, "f", 0o644)
			chown(t, p)
			return p
		}},
		{name: "directory owned by a user", wantErr: ErrUntrusted, hint: "directory %D/u is owned by uid 65534", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "u", 0o755)
			chown(t, filepath.Join(dir, "u"))
			return write(t, filepath.Join(dir, "u"), "f", 0o644)
		}},
		{name: "group-writable file", wantErr: ErrUntrusted, hint: "chmod g-w", setup: func(t *testing.T, dir string) string {
			return write(t, dir, "f", 0o664)
		}},
		{name: "world-writable directory", wantErr: ErrUntrusted, hint: "writable by group and others (mode 0777)", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "w", 0o777)
			return write(t, filepath.Join(dir, "w"), "f", 0o644)
		}},
		{name: "root-owned sticky directory", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "tmp", 0o1777)
			return write(t, filepath.Join(dir, "tmp"), "f", 0o644)
		}},
		{name: "user's link in a sticky directory", wantErr: ErrUntrusted, hint: "only root's links are followed there", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "tmp", 0o1777)
			write(t, dir, "f", 0o644)
			l := filepath.Join(dir, "tmp", "l")
			link(t, filepath.Join(dir, "f"), l)
			chown(t, l)
			return l
		}},
		{name: "root's link in a sticky directory", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "tmp", 0o1777)
			write(t, dir, "f", 0o644)
			l := filepath.Join(dir, "tmp", "l")
			link(t, filepath.Join(dir, "f"), l)
			return l
		}},
		{name: "user-owned sticky directory", wantErr: ErrUntrusted, hint: "owned by uid 65534", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "tmp", 0o1777)
			chown(t, filepath.Join(dir, "tmp"))
			return write(t, filepath.Join(dir, "tmp"), "f", 0o644)
		}},
		{name: "link into a user's directory", wantErr: ErrUntrusted, hint: "%D/u is owned", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "u", 0o755)
			chown(t, filepath.Join(dir, "u"))
			write(t, filepath.Join(dir, "u"), "f", 0o644)
			link(t, filepath.Join(dir, "u", "f"), filepath.Join(dir, "l"))
			return filepath.Join(dir, "l")
		}},
		{name: "relative link with ..", setup: func(t *testing.T, dir string) string {
			mkdir(t, dir, "a", 0o755)
			mkdir(t, dir, "b", 0o755)
			write(t, filepath.Join(dir, "b"), "f", 0o644)
			link(t, "../b/f", filepath.Join(dir, "a", "l"))
			return filepath.Join(dir, "a", "l")
		}},
		{name: "directory", wantErr: ErrNotRegular, hint: "is a directory", setup: func(t *testing.T, dir string) string {
			return dir
		}},
		{name: "fifo", wantErr: ErrNotRegular, hint: "named pipe", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{name: "dev zero", wantErr: ErrNotRegular, hint: "character device", setup: func(*testing.T, string) string { return "/dev/zero" }},
		{name: "link to dev urandom", wantErr: ErrNotRegular, hint: "character device", setup: func(t *testing.T, dir string) string {
			link(t, "/dev/urandom", filepath.Join(dir, "l"))
			return filepath.Join(dir, "l")
		}},
		{name: "missing", wantErr: os.ErrNotExist, setup: func(t *testing.T, dir string) string {
			return filepath.Join(dir, "none")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := tt.setup(t, dir)
			f, err := Open(p, true)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Open(%s): %v", p, err)
				}
				f.Close()
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("Open(%s) passed, want %v", p, tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open(%s) = %v, want %v", p, err, tt.wantErr)
			}
			if hint := strings.ReplaceAll(tt.hint, "%D", dir); !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not say %q", err, hint)
			}
		})
	}
}

// Without strict, owners do not matter but the kind of file does.
func TestOpenLax(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "f", 0o666)
	f, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", dir} {
		if _, err := Open(p, false); !errors.Is(err, ErrNotRegular) {
			t.Errorf("Open(%s) = %v, want ErrNotRegular", p, err)
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, make([]byte, 1001), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p, false, 1000); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1000 bytes") {
		t.Errorf("ReadFile over the limit = %v", err)
	}
	if b, err := ReadFile(p, false, 1001); err != nil || len(b) != 1001 {
		t.Errorf("ReadFile at the limit = %d bytes, %v", len(b), err)
	}
}

func TestOpenProgram(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s")
	if err := os.WriteFile(script, []byte("#! /bin/sh -e \nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := OpenProgram(script, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	path, argv, files := p.Command(3, []string{"a"})
	if !execByDescriptor {
		t.Skip("this system runs programs by their path")
	}
	if path != "/proc/self/fd/3" || strings.Join(argv, " ") != "/bin/sh -e /dev/fd/4 a" || len(files) != 2 {
		t.Errorf("Command = %q %q %d files", path, argv, len(files))
	}
	rel := filepath.Join(dir, "r")
	if err := os.WriteFile(rel, []byte("#!sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenProgram(rel, false); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative interpreter: %v", err)
	}
}

func write(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("x = 1;\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t *testing.T, dir, name string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode.Perm()); err != nil {
		t.Fatal(err)
	}
	if mode&0o1000 != 0 {
		if err := syscall.Chmod(p, uint32(mode.Perm())|syscall.S_ISVTX); err != nil {
			t.Fatal(err)
		}
	}
}

func chown(t *testing.T, p string) {
	t.Helper()
	if err := os.Lchown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// CheckProgram is the check a driver makes right before it runs a
// program by name: a root daemon refuses one on a path a user can change,
// and lets pass one that is not there (the start says so).
func TestCheckProgram(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the rule applies to a root daemon, and the user's directory must belong to another user")
	}
	dir := t.TempDir()
	mkdir(t, dir, "root", 0o755)
	mkdir(t, dir, "user", 0o755)
	if err := os.Lchown(filepath.Join(dir, "user"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	good := write(t, filepath.Join(dir, "root"), "prog", 0o755)
	bad := write(t, filepath.Join(dir, "user"), "prog", 0o755)
	for prog, want := range map[string]string{
		good:                    "",
		"sh":                    "",
		filepath.Join(dir, "x"): "",
		bad:                     "directory " + filepath.Join(dir, "user") + " is owned by uid 65534",
	} {
		err := CheckProgram(prog)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("CheckProgram(%s) = %v, want %q", prog, err, want)
		}
	}
}
