package man

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestInstall runs the Makefile's install and uninstall targets into a
// temporary DESTDIR, for each kind of service file, and checks the tree.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries; skipped with -short")
	}
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed; the install targets are not tested")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH; make install cannot build")
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		service, prefix string
		want            map[string]fs.FileMode
	}{
		{"systemd", "/usr", map[string]fs.FileMode{
			"usr/sbin/vmstated":                              0o755,
			"usr/bin/vmstatedctl":                            0o755,
			"usr/share/man/man8/vmstated.8":                  0o644,
			"usr/share/man/man8/vmstatedctl.8":               0o644,
			"usr/share/man/man5/vmstated.conf.5":             0o644,
			"usr/lib/systemd/system/vmstated.service":        0o644,
			"usr/lib/systemd/system/vmstated-guests.service": 0o644,
		}},
		{"rc.d", "/usr/local", map[string]fs.FileMode{
			"usr/local/sbin/vmstated":                  0o755,
			"usr/local/bin/vmstatedctl":                0o755,
			"usr/local/share/man/man8/vmstated.8":      0o644,
			"usr/local/share/man/man8/vmstatedctl.8":   0o644,
			"usr/local/share/man/man5/vmstated.conf.5": 0o644,
			"usr/local/etc/rc.d/vmstated":              0o755,
		}},
	} {
		t.Run(c.service, func(t *testing.T) {
			dest := t.TempDir()
			run := func(target string) {
				t.Helper()
				cmd := exec.Command(makeCmd, "-C", top, target, "DESTDIR="+dest, "PREFIX="+c.prefix, "SERVICE="+c.service)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("make %s: %v\n%s", target, err, out)
				}
			}
			run("install")
			got := files(t, dest)
			for path, mode := range c.want {
				m, ok := got[path]
				if !ok {
					t.Errorf("make install did not create %s; it created %v", path, keys(got))
					continue
				}
				if m != mode {
					t.Errorf("%s has mode %v, want %v", path, m, mode)
				}
			}
			for path := range got {
				if _, ok := c.want[path]; !ok {
					t.Errorf("make install created %s, which nothing expects", path)
				}
			}
			svc := filepath.Join(dest, "usr/lib/systemd/system/vmstated.service")
			if c.service == "rc.d" {
				svc = filepath.Join(dest, "usr/local/etc/rc.d/vmstated")
			}
			b, err := os.ReadFile(svc)
			if err != nil {
				t.Fatal(err)
			}
			if want := c.prefix + "/sbin/vmstated"; !strings.Contains(string(b), want) {
				t.Errorf("%s does not run %s:\n%s", svc, want, b)
			}
			if c.service == "systemd" {
				guests := filepath.Join(dest, "usr/lib/systemd/system/vmstated-guests.service")
				b, err := os.ReadFile(guests)
				if err != nil {
					t.Fatal(err)
				}
				if want := "ExecStop=" + c.prefix + "/bin/vmstatedctl shutdown"; !strings.Contains(string(b), want) {
					t.Errorf("%s does not run %s:\n%s", guests, want, b)
				}
			}

			run("uninstall")
			if left := files(t, dest); len(left) > 0 {
				t.Errorf("make uninstall left %v", keys(left))
			}
		})
	}
}

// files lists the regular files under dir with their permission bits.
func files(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]fs.FileMode) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestUnitsVerify installs the systemd units with a PREFIX under a
// temporary directory, so that the programs they name exist, and has
// systemd-analyze verify them: any complaint fails, warnings included
// (systemd ignores an unknown key with only a warning).
func TestUnitsVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries; skipped with -short")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the units are not verified")
	}
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed; the units cannot be installed to verify them")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH; make install cannot build")
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	cmd := exec.Command(makeCmd, "-C", top, "install", "PREFIX="+prefix, "SERVICE=systemd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	dir := filepath.Join(prefix, "lib", "systemd", "system")
	units, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	if len(units) != 2 {
		t.Fatalf("make install put %v in %s, want both units", units, dir)
	}
	// --man=no: the pages are installed under the temporary prefix, where
	// man does not look.
	out, err := exec.Command(analyze, append([]string{"--man=no", "verify"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %v: %v\n%s", units, err, out)
	}
}
