package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const nobody = 65534

// Every file a config reads is bounded and, as root, trusted; every
// refusal names the file and the rule or the cap it fails.
func TestLoadDirRefusals(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name     string
		needRoot bool
		// setup writes the VM directory and returns the config text.
		setup func(t *testing.T, dir string) string
		want  string // the error says this ("%D" is the VM directory)
	}{
		{name: "include /dev/zero", want: "/dev/zero is a character device, not a regular file", setup: func(t *testing.T, dir string) string {
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } .include "/dev/zero" }`
		}},
		{name: "include /dev/urandom", want: "/dev/urandom is a character device", setup: func(t *testing.T, dir string) string {
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } .include "/dev/urandom" }`
		}},
		{name: "include a FIFO", want: "named pipe (FIFO), not a regular file", setup: func(t *testing.T, dir string) string {
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } .include "fifo" }`
		}},
		{name: "config is a link to /dev/zero", want: "/dev/zero is a character device", setup: func(t *testing.T, dir string) string {
			return "->/dev/zero"
		}},
		{name: "config over the file cap", want: "larger than 512 KiB (the limit for one config file)", setup: func(t *testing.T, dir string) string {
			return "vm { description = \"" + strings.Repeat("x", MaxFileSize) + "\"; }"
		}},
		{name: "includes over the per-VM cap", want: "together would exceed 1024 KiB (the per-VM limit)", setup: func(t *testing.T, dir string) string {
			for _, n := range []string{"a", "b", "c"} {
				if err := os.WriteFile(filepath.Join(dir, n), []byte("x"+n+" = \""+strings.Repeat("y", 400<<10)+"\";\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } .include "a"
.include "b"
.include "c"
}`
		}},
		{name: "too many keys", want: "more than 10000 keys", setup: func(t *testing.T, dir string) string {
			var b strings.Builder
			b.WriteString("vm { hypervisor = exec; exec { command = [\"/bin/true\"]; }\n")
			for i := 0; i < MaxKeys+1; i++ {
				b.WriteString("k")
				b.WriteString(strings.Repeat("a", i%7))
				b.WriteString(itoa(i))
				b.WriteString(" = 1;\n")
			}
			return b.String() + "}"
		}},
		{name: "a value too long for a hook", want: "too long for a hook's environment", setup: func(t *testing.T, dir string) string {
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } notes = "` + strings.Repeat("n", 200<<10) + `"; }`
		}},
		{name: "values too long together", want: "more than the limit of 512 KiB", setup: func(t *testing.T, dir string) string {
			for _, f := range []string{"a", "b"} {
				var b strings.Builder
				for i := 0; i < 3; i++ {
					b.WriteString("note" + f + itoa(i) + " = \"" + strings.Repeat("n", 100<<10) + "\";\n")
				}
				if err := os.WriteFile(filepath.Join(dir, f), []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return "vm { hypervisor = exec; exec { command = [\"/bin/true\"]; }\n.include \"a\"\n.include \"b\"\n}"
		}},
		{name: "description with a newline", want: `control character '\n'`, setup: func(t *testing.T, dir string) string {
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } description = "ok\nweb  running  fake"; }`
		}},
		{name: "description with an escape", want: `control character '\x1b'`, setup: func(t *testing.T, dir string) string {
			return "vm { hypervisor = exec; exec { command = [\"/bin/true\"]; } description = \"\\u001b[2J\"; }"
		}},
		{name: "config in a user's directory", needRoot: true, want: "directory %D is owned by uid 65534, not root", setup: func(t *testing.T, dir string) string {
			chown(t, dir)
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } }`
		}},
		{name: "group-writable config", needRoot: true, want: "%D/config is writable by its group (mode 0664)", setup: func(t *testing.T, dir string) string {
			return "mode0664:" + `vm { hypervisor = exec; exec { command = ["/bin/true"]; } }`
		}},
		{name: "include owned by a user", needRoot: true, want: "file %D/inc is owned by uid 65534", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "inc")
			if err := os.WriteFile(p, []byte("memory = 64;\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			chown(t, p)
			return `vm { hypervisor = exec; exec { command = ["/bin/true"]; } .include "inc" }`
		}},
		{name: "exec program in a user's directory", needRoot: true, want: "program refused: %D/u/prog: directory %D/u is owned by uid 65534", setup: func(t *testing.T, dir string) string {
			u := filepath.Join(dir, "u")
			if err := os.Mkdir(u, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(u, "prog"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			chown(t, u)
			return `vm { hypervisor = exec; exec { command = ["` + filepath.Join(u, "prog") + `"]; } }`
		}},
		{name: "qemu binary owned by a user", needRoot: true, want: "qemu.binary: program refused: %D/qemu: file %D/qemu is owned by uid 65534", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "qemu")
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			chown(t, p)
			return `vm { qemu { binary = "` + p + `"; } }`
		}},
		{name: "configfile owned by a user", needRoot: true, want: "configfile: refused: %D/qemu.cfg: file %D/qemu.cfg is owned by uid 65534", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "qemu.cfg")
			if err := os.WriteFile(p, []byte("[machine]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			chown(t, p)
			return `vm { configfile = qemu.cfg; }`
		}},
		{name: "script program with a user's interpreter", needRoot: true, want: "the interpreter on its #! line", setup: func(t *testing.T, dir string) string {
			interp := filepath.Join(dir, "sh")
			if err := os.WriteFile(interp, []byte("\x7fELF"), 0o755); err != nil {
				t.Fatal(err)
			}
			chown(t, interp)
			if err := os.WriteFile(filepath.Join(dir, "prog"), []byte("#!"+interp+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return `vm { hypervisor = exec; exec { command = ["` + filepath.Join(dir, "prog") + `"]; } }`
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && !root {
				t.Skip("needs root: the trust rule applies to a root daemon")
			}
			dir := filepath.Join(t.TempDir(), "vm")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			text := tt.setup(t, dir)
			cfg := filepath.Join(dir, FileName)
			switch {
			case strings.HasPrefix(text, "->"):
				if err := os.Symlink(text[2:], cfg); err != nil {
					t.Fatal(err)
				}
			case strings.HasPrefix(text, "mode0664:"):
				if err := os.WriteFile(cfg, []byte(text[len("mode0664:"):]), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(cfg, 0o664); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan struct{})
			var vm *VM
			var diags Diagnostics
			go func() {
				defer close(done)
				vm, diags = LoadDir(dir, LoadOptions{})
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("LoadDir blocked")
			}
			if vm != nil {
				t.Fatalf("loaded; want refused with %q (diagnostics %v)", tt.want, diags)
			}
			want := strings.ReplaceAll(tt.want, "%D", dir)
			if !strings.Contains(diags.Errors().Error(), want) {
				t.Errorf("errors %q do not say %q", diags.Errors(), want)
			}
		})
	}
}

// A section name that is not a VM name never becomes the name under which
// the broken directory is known.
func TestInvalidNameNeverUsed(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`"../../tmp/x" { hypervisor = exec; exec { command = ["/bin/true"]; } }`), 0o644); err != nil {
		t.Fatal(err)
	}
	snap := LoadRoot(root, LoadOptions{})
	inv := snap.Invalid[dir]
	if inv == nil || len(snap.VMs) != 0 {
		t.Fatalf("loaded %v, invalid %v", snap.Names(), snap.Invalid)
	}
	if inv.Name != "a" {
		t.Errorf("the invalid directory is known as %q, want its directory's name", inv.Name)
	}
	if got := safeName("../x y"); ValidateName(got) != nil {
		t.Errorf("safeName gave %q, not a valid name", got)
	}
}

func chown(t *testing.T, p string) {
	t.Helper()
	if err := os.Lchown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}
