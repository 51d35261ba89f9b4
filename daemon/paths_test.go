package daemon

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDefaultPaths(t *testing.T) {
	home := map[string]string{"HOME": "/home/ann"}
	xdg := map[string]string{
		"HOME":            "/home/ann",
		"XDG_CONFIG_HOME": "/cfg",
		"XDG_STATE_HOME":  "/st/",
		"XDG_RUNTIME_DIR": "/run/user/1000",
		"TMPDIR":          "/scratch",
	}
	linuxRoot := Paths{
		ConfigDir: "/etc/vmstated",
		LogDir:    "/var/log/vmstated",
		StateDir:  "/var/lib/vmstated",
		RunDir:    "/run/vmstated",
		Socket:    "/run/vmstated.sock",
		Pidfile:   "/run/vmstated.pid",
	}
	freebsdRoot := Paths{
		ConfigDir: "/usr/local/etc/vmstated",
		LogDir:    "/var/log/vmstated",
		StateDir:  "/var/lib/vmstated",
		RunDir:    "/var/run/vmstated",
		Socket:    "/var/run/vmstated.sock",
		Pidfile:   "/var/run/vmstated.pid",
	}
	userHome := Paths{
		ConfigDir: "/home/ann/.config/vmstated",
		LogDir:    "/home/ann/.local/state/vmstated/log",
		StateDir:  "/home/ann/.local/state/vmstated",
		RunDir:    "/tmp/vmstated-1000",
		Socket:    "/tmp/vmstated-1000/vmstated.sock",
		Pidfile:   "/tmp/vmstated-1000/vmstated.pid",
	}
	userXDG := Paths{
		ConfigDir: "/cfg/vmstated",
		LogDir:    "/st/vmstated/log",
		StateDir:  "/st/vmstated",
		RunDir:    "/run/user/1000/vmstated",
		Socket:    "/run/user/1000/vmstated/vmstated.sock",
		Pidfile:   "/run/user/1000/vmstated/vmstated.pid",
	}
	for _, tc := range []struct {
		name string
		euid int
		goos string
		env  map[string]string
		want Paths
	}{
		{"root linux", 0, "linux", nil, linuxRoot},
		{"root linux ignores XDG", 0, "linux", xdg, linuxRoot},
		{"root freebsd", 0, "freebsd", nil, freebsdRoot},
		{"root freebsd ignores XDG", 0, "freebsd", xdg, freebsdRoot},
		{"user linux home only", 1000, "linux", home, userHome},
		{"user freebsd home only", 1000, "freebsd", home, userHome},
		{"user linux XDG", 1000, "linux", xdg, userXDG},
		{"user freebsd XDG", 1000, "freebsd", xdg, userXDG},
		{"user TMPDIR fallback", 1000, "linux",
			map[string]string{"HOME": "/home/ann", "TMPDIR": "/scratch/"},
			Paths{
				ConfigDir: "/home/ann/.config/vmstated",
				LogDir:    "/home/ann/.local/state/vmstated/log",
				StateDir:  "/home/ann/.local/state/vmstated",
				RunDir:    "/scratch/vmstated-1000",
				Socket:    "/scratch/vmstated-1000/vmstated.sock",
				Pidfile:   "/scratch/vmstated-1000/vmstated.pid",
			}},
		{"user relative XDG ignored", 1000, "linux",
			map[string]string{"HOME": "/home/ann", "XDG_CONFIG_HOME": "cfg", "XDG_STATE_HOME": "./st", "XDG_RUNTIME_DIR": "run", "TMPDIR": "tmp"},
			userHome},
		{"user without HOME", 1000, "linux", nil,
			Paths{
				RunDir:  "/tmp/vmstated-1000",
				Socket:  "/tmp/vmstated-1000/vmstated.sock",
				Pidfile: "/tmp/vmstated-1000/vmstated.pid",
			}},
		{"user without HOME, XDG set", 1000, "linux",
			map[string]string{"XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/st", "XDG_RUNTIME_DIR": "/run/user/1000"},
			userXDG},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DefaultPaths(tc.euid, tc.goos, func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// testPaths lays out Paths under one temporary directory with the config dir
// present.
func testPaths(t *testing.T) Paths {
	t.Helper()
	base := t.TempDir()
	p := Paths{
		ConfigDir: filepath.Join(base, "etc"),
		LogDir:    filepath.Join(base, "log", "vmstated"),
		StateDir:  filepath.Join(base, "lib", "vmstated"),
		RunDir:    filepath.Join(base, "run", "vmstated"),
		Socket:    filepath.Join(base, "sock", "vmstated.sock"),
		Pidfile:   filepath.Join(base, "pid", "vmstated.pid"),
	}
	if err := os.Mkdir(p.ConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func mode(t *testing.T, dir string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestEnsureCreates(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	p := testPaths(t)
	if err := p.Ensure(); err != nil {
		t.Fatal(err)
	}
	logMode, parentMode := fs.FileMode(0o700), fs.FileMode(0o700)
	if os.Geteuid() == 0 {
		logMode, parentMode = 0o750, 0o755
	}
	for _, c := range []struct {
		dir  string
		want fs.FileMode
	}{
		{p.LogDir, logMode},
		{p.StateDir, 0o700},
		{p.RunDir, 0o700},
		{filepath.Dir(p.Socket), parentMode},
		{filepath.Dir(p.Pidfile), parentMode},
	} {
		if got := mode(t, c.dir); got != c.want {
			t.Errorf("%s: mode %#o, want %#o", c.dir, got, c.want)
		}
	}
	// Idempotent.
	if err := p.Ensure(); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
}

func TestEnsureRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p *Paths)
		want  string
	}{
		{"no config dir", func(t *testing.T, p *Paths) { os.Remove(p.ConfigDir) },
			"does not exist: create it (one subdirectory per VM) or pass -c"},
		{"config dir is a file", func(t *testing.T, p *Paths) {
			os.Remove(p.ConfigDir)
			os.WriteFile(p.ConfigDir, nil, 0o644)
		}, "is not a directory: pass -c"},
		{"empty log dir", func(t *testing.T, p *Paths) { p.LogDir = "" },
			"no log dir: set HOME or XDG_STATE_HOME, or pass -l"},
		{"empty config dir", func(t *testing.T, p *Paths) { p.ConfigDir = "" },
			"no config dir: set HOME or XDG_CONFIG_HOME, or pass -c"},
		{"run dir is a symlink", func(t *testing.T, p *Paths) {
			elsewhere := t.TempDir()
			os.MkdirAll(filepath.Dir(p.RunDir), 0o755)
			if err := os.Symlink(elsewhere, p.RunDir); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
		{"run dir is a file", func(t *testing.T, p *Paths) {
			os.MkdirAll(filepath.Dir(p.RunDir), 0o755)
			os.WriteFile(p.RunDir, nil, 0o600)
		}, "create run dir"},
		{"state dir writable by others", func(t *testing.T, p *Paths) {
			os.MkdirAll(p.StateDir, 0o700)
			os.Chmod(p.StateDir, 0o777)
		}, "writable by others: chmod go-w it"},
		{"socket path too long", func(t *testing.T, p *Paths) {
			p.Socket = filepath.Join(filepath.Dir(p.Socket), strings.Repeat("s", MaxSocketPath)+".sock")
		}, fmt.Sprintf("a unix socket path has at most %d bytes on this system: pass a shorter one with -s", MaxSocketPath)},
		{"run dir owned by someone else", func(t *testing.T, p *Paths) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			os.MkdirAll(p.RunDir, 0o700)
			if err := os.Chown(p.RunDir, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 12345, not 0: remove it or pass another path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPaths(t)
			tc.setup(t, &p)
			err := p.Ensure()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Ensure: %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestPathsAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Paths{ConfigDir: "etc", LogDir: "/var/log/x", RunDir: "./run", Socket: "s.sock"}.Absolute()
	if err != nil {
		t.Fatal(err)
	}
	want := Paths{ConfigDir: filepath.Join(wd, "etc"), LogDir: "/var/log/x", RunDir: filepath.Join(wd, "run"),
		Socket: filepath.Join(wd, "s.sock")}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
}

// A socket path of exactly MaxSocketPath bytes binds, so the limit
// Ensure enforces is the system's, not a tighter one.
func TestMaxSocketPathBinds(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "s")
	name += strings.Repeat("x", MaxSocketPath-len(name))
	if len(name) != MaxSocketPath {
		t.Fatalf("temporary directory %s too long for the test", dir)
	}
	l, err := net.Listen("unix", name)
	if err != nil {
		t.Fatalf("bind %d bytes: %v", len(name), err)
	}
	l.Close()
	p := testPaths(t)
	p.Socket = name
	if err := p.Ensure(); err != nil {
		t.Fatalf("Ensure refused a %d-byte socket path: %v", len(name), err)
	}
}
