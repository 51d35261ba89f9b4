// Package man holds the manual pages (vmstated.8, vmstatedctl.8,
// vmstated.conf.5) and the tests that keep them true: they must pass
// mandoc's lint, and every config key, daemon flag, vmstatedctl command and
// flag, state, default and default path the code has must be documented.
// The lists come from the code itself (exported values where there are
// some, the source's tables where not), so a new key or command without
// documentation fails here.
package man

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/daemon"
	"github.com/vmstated/vmstated/statemachine"
)

// pages are the manual pages this directory ships.
var pages = []string{"vmstated.8", "vmstatedctl.8", "vmstated.conf.5"}

func readPage(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLint(t *testing.T) {
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Skip("mandoc is not installed (Debian: apt-get install mandoc); the pages are not linted")
	}
	for _, p := range pages {
		t.Run(p, func(t *testing.T) {
			out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", p).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("mandoc -T lint -W warning %s: %v\n%s", p, err, out)
			}
		})
	}
}

// section returns the text of the .Ss (or .Sh) named title, up to the next
// .Ss or .Sh.
func section(t *testing.T, page, title string) string {
	t.Helper()
	for _, macro := range []string{".Ss ", ".Sh "} {
		start := strings.Index(page, "\n"+macro+title+"\n")
		if start < 0 {
			continue
		}
		rest := page[start+1:]
		rest = rest[strings.IndexByte(rest, '\n')+1:]
		end := len(rest)
		for _, next := range []string{"\n.Ss ", "\n.Sh "} {
			if i := strings.Index(rest, next); i >= 0 && i < end {
				end = i
			}
		}
		return rest[:end]
	}
	t.Fatalf("no section %q", title)
	return ""
}

var itCm = regexp.MustCompile(`(?m)^\.It (?:Xo\n)?\.?Cm ([a-z0-9_.-]+)`)

// items returns the names of the .It Cm entries of text, in order.
func items(text string) []string {
	var out []string
	for _, m := range itCm.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseGo parses one Go source file of the project.
func parseGo(t *testing.T, path string) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return f
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// stringSliceVar returns the strings of `var name = []string{...}` in f.
func stringSliceVar(t *testing.T, f *ast.File, name string) []string {
	t.Helper()
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != name || i >= len(vs.Values) {
					continue
				}
				cl, ok := vs.Values[i].(*ast.CompositeLit)
				if !ok {
					t.Fatalf("config: %s is not a []string literal any more; update this test", name)
				}
				var out []string
				for _, el := range cl.Elts {
					if s, ok := stringLit(el); ok {
						out = append(out, s)
					}
				}
				return out
			}
		}
	}
	t.Fatalf("config/keys.go has no var %s any more; update this test to find the key list", name)
	return nil
}

// topLevelKeys returns the keys of the map literal assigned to topKeys in
// config/keys.go: the top-level keys the loader accepts.
func topLevelKeys(t *testing.T, f *ast.File) []string {
	t.Helper()
	var keys []string
	ast.Inspect(f, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) != 1 || len(as.Rhs) != 1 {
			return true
		}
		if id, ok := as.Lhs[0].(*ast.Ident); !ok || id.Name != "topKeys" {
			return true
		}
		cl, ok := as.Rhs[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		for _, el := range cl.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				if s, ok := stringLit(kv.Key); ok {
					keys = append(keys, s)
				}
			}
		}
		return false
	})
	if len(keys) == 0 {
		t.Fatal("config/keys.go: no topKeys map literal found; update this test to find the key list")
	}
	return keys
}

func TestConfigKeysDocumented(t *testing.T) {
	page := readPage(t, "vmstated.conf.5")
	f := parseGo(t, filepath.Join("..", "config", "keys.go"))

	documented := append(items(section(t, page, "Keys of vmstated")), items(section(t, page, "Keys of this daemon"))...)
	code := topLevelKeys(t, f)
	for _, k := range code {
		if contains(documented, k) {
			continue
		}
		switch k {
		case "qemu", "exec", "bhyve":
			// Sections have their own .Ss.
			section(t, page, "The "+k+" section")
		default:
			t.Errorf("vmstated.conf.5: top-level key %s is not documented (.It Cm %s in Keys of vmstated or Keys of this daemon)", k, k)
		}
	}
	for _, k := range documented {
		if !contains(code, k) {
			t.Errorf("vmstated.conf.5 documents key %s, which the loader does not accept", k)
		}
	}

	for _, s := range []struct{ title, list string }{
		{"The qemu section", "qemuKeys"},
		{"Disks", "diskKeys"},
		{"Network devices", "nicKeys"},
		{"The exec section", "execKeys"},
		{"The bhyve section", "bhyveKeys"},
		{"The cloud_init section", "cloudInitKeys"},
	} {
		code := stringSliceVar(t, f, s.list)
		doc := items(section(t, page, s.title))
		for _, k := range code {
			if !contains(doc, k) {
				t.Errorf("vmstated.conf.5: %s: key %s is not documented", s.title, k)
			}
		}
		for _, k := range doc {
			if !contains(code, k) {
				t.Errorf("vmstated.conf.5: %s documents key %s, which the loader does not accept", s.title, k)
			}
		}
	}

	// hook_timeouts takes the hook states.
	ht := keyItem(t, page, "hook_timeouts")
	for _, st := range config.HookStates {
		if !strings.Contains(ht, st) {
			t.Errorf("vmstated.conf.5: hook_timeouts does not list the state %s", st)
		}
	}
}

// keyItem returns the text of the .It Cm key entry, up to the next .It.
func keyItem(t *testing.T, page, key string) string {
	t.Helper()
	i := strings.Index(page, "\n.It Cm "+key+" ")
	if i < 0 {
		i = strings.Index(page, "\n.It Cm "+key+"\n")
	}
	if i < 0 {
		t.Fatalf("no .It Cm %s", key)
	}
	rest := page[i+1:]
	if j := strings.Index(rest[1:], "\n.It "); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

// dur writes a duration as the pages do: 30s, 60s, 5min.
func dur(d time.Duration) string {
	if d%time.Minute == 0 && d > time.Minute {
		return fmt.Sprintf("%dmin", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func TestConfigDefaultsDocumented(t *testing.T) {
	page := readPage(t, "vmstated.conf.5")
	for _, c := range []struct{ key, want string }{
		{"maxrestart", fmt.Sprintf("default %d", config.DefaultMaxRestart)},
		{"maxrestarttime", "default " + dur(config.DefaultMaxRestartTime)},
		{"stop_timeout", "default " + dur(config.DefaultStopTimeout)},
		{"hook_timeout", "Default " + dur(config.DefaultHookTimeout)},
		{"log_max_size", fmt.Sprintf("default %d", config.DefaultLogMaxSizeMB)},
		{"log_max_files", fmt.Sprintf("default %d", config.DefaultLogMaxFiles)},
		{"on_poweroff", "default\n.Cm " + string(config.DefaultOnPoweroff) + " ."},
		{"on_reboot", "default\n.Cm " + string(config.DefaultOnReboot) + " ."},
		{"on_crash", "default\n.Cm " + string(config.DefaultOnCrash) + " ."},
		{"memory", fmt.Sprintf("Default: %d for QEMU", config.DefaultQEMUMemoryMB)},
		{"cpus", fmt.Sprintf("Default: %d for QEMU", config.DefaultQEMUCPUs)},
		{"binary", config.DefaultQEMUBinary},
		{"machine", config.DefaultQEMUMachine},
		{"accel", config.DefaultQEMUAccel},
		{"vga", config.DefaultQEMUVGA},
		{"vnc", config.DefaultQEMUVNC + "\n(the default)"},
		{"format", config.DefaultDiskFormat},
		{"interface", config.DefaultDiskIface},
		{"model", config.DefaultNICModel},
		{"stop_signal", strings.TrimPrefix(config.DefaultStopSignal, "SIG")},
		{"bhyvectl", config.DefaultBhyvectl},
	} {
		if got := keyItem(t, page, c.key); !strings.Contains(got, c.want) {
			t.Errorf("vmstated.conf.5: %s should say %q:\n%s", c.key, c.want, got)
		}
	}
	if !strings.Contains(section(t, page, "The bhyve section"), config.DefaultBhyveBinary) {
		t.Errorf("vmstated.conf.5: the bhyve section does not name the default binary %s", config.DefaultBhyveBinary)
	}
}

// flagNames returns the flag names defined in function fn of f by calls
// such as fs.StringVar(&x, "c", ...) and fs.Bool("h", ...).
func flagNames(t *testing.T, f *ast.File, fn string) []string {
	t.Helper()
	var names []string
	found := false
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		found = true
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			m := sel.Sel.Name
			arg := 0
			switch m {
			case "Bool", "String", "Int", "Float64", "Uint64", "Duration":
			case "BoolVar", "StringVar", "IntVar", "Float64Var", "Uint64Var", "DurationVar":
				arg = 1
			default:
				return true
			}
			if len(call.Args) > arg {
				if s, ok := stringLit(call.Args[arg]); ok {
					names = append(names, s)
				}
			}
			return true
		})
	}
	if !found {
		t.Fatalf("no function %s; update this test", fn)
	}
	return names
}

func TestDaemonFlagsDocumented(t *testing.T) {
	page := readPage(t, "vmstated.8")
	flags := flagNames(t, parseGo(t, filepath.Join("..", "cmd", "vmstated", "main.go")), "parseFlags")
	if len(flags) < 5 {
		t.Fatalf("found only the flags %v in cmd/vmstated; update this test", flags)
	}
	synopsis := section(t, page, "SYNOPSIS")
	for _, fl := range flags {
		if !regexp.MustCompile(`(?m)^\.It Fl ` + fl + `\b`).MatchString(page) {
			t.Errorf("vmstated.8: flag -%s has no .It Fl %s entry", fl, fl)
		}
		if !regexp.MustCompile(`Fl [a-zA-Z]*` + fl).MatchString(synopsis) {
			t.Errorf("vmstated.8: flag -%s is not in the SYNOPSIS", fl)
		}
	}
}

func TestDefaultPathsDocumented(t *testing.T) {
	page := readPage(t, "vmstated.8")
	files := section(t, page, "FILES")
	for _, goos := range []string{"linux", "freebsd"} {
		p := daemon.DefaultPaths(0, goos, func(string) string { return "" })
		for _, path := range []string{p.ConfigDir, p.LogDir, p.StateDir, p.RunDir, p.Socket, p.Pidfile} {
			if !strings.Contains(files, path) {
				t.Errorf("vmstated.8 FILES does not name the %s default %s", goos, path)
			}
		}
	}
	env := map[string]string{
		"HOME":            "/home/u",
		"XDG_CONFIG_HOME": "/XDG_CONFIG_HOME",
		"XDG_STATE_HOME":  "/XDG_STATE_HOME",
		"XDG_RUNTIME_DIR": "/XDG_RUNTIME_DIR",
	}
	p := daemon.DefaultPaths(1000, "linux", func(k string) string { return env[k] })
	for _, path := range []string{p.ConfigDir, p.LogDir, p.StateDir, p.RunDir, p.Socket, p.Pidfile} {
		want := "$" + strings.TrimPrefix(path, "/")
		if !strings.Contains(files, want) {
			t.Errorf("vmstated.8 FILES does not name the non-root default %s", want)
		}
	}
	p = daemon.DefaultPaths(1000, "linux", func(k string) string {
		if k == "HOME" {
			return "/home/u"
		}
		return ""
	})
	for _, path := range []string{p.ConfigDir, p.StateDir} {
		want := "~" + strings.TrimPrefix(path, "/home/u")
		if !strings.Contains(files, want) {
			t.Errorf("vmstated.8 FILES does not name the non-root default %s", want)
		}
	}
}

func TestStatesDocumented(t *testing.T) {
	page := readPage(t, "vmstated.8")
	doc := items(section(t, page, "States"))
	for _, st := range statemachine.States {
		if !contains(doc, string(st)) {
			t.Errorf("vmstated.8: state %s has no .It Cm %s entry under States", st, st)
		}
	}
	for _, d := range doc {
		if !statemachine.State(d).Valid() {
			t.Errorf("vmstated.8 documents a state %s the state machine does not have", d)
		}
	}
}

// ctlCommand is one entry of vmstatedctl's command table.
type ctlCommand struct {
	name    string
	args    string
	aliases []string
}

// ctlCommands reads the command table of cmd/vmstatedctl: the composite
// literals of type cmd, without the hidden ones.
func ctlCommands(t *testing.T) []ctlCommand {
	t.Helper()
	f := parseGo(t, filepath.Join("..", "cmd", "vmstatedctl", "cmds.go"))
	var out []ctlCommand
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var c ctlCommand
		hidden := false
		for _, el := range cl.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, ok := kv.Key.(*ast.Ident)
			if !ok {
				continue
			}
			switch key.Name {
			case "name":
				c.name, _ = stringLit(kv.Value)
			case "args":
				c.args, _ = stringLit(kv.Value)
			case "hidden":
				if id, ok := kv.Value.(*ast.Ident); ok && id.Name == "true" {
					hidden = true
				}
			case "aliases":
				if al, ok := kv.Value.(*ast.CompositeLit); ok {
					for _, e := range al.Elts {
						if s, ok := stringLit(e); ok {
							c.aliases = append(c.aliases, s)
						}
					}
				}
			}
		}
		if c.name != "" && !hidden {
			out = append(out, c)
		}
		return true
	})
	if len(out) < 10 {
		t.Fatalf("found only %d commands in cmd/vmstatedctl/cmds.go; update this test", len(out))
	}
	return out
}

var flagInArgs = regexp.MustCompile(`-([a-z]+)`)

func TestCtlCommandsDocumented(t *testing.T) {
	page := readPage(t, "vmstatedctl.8")
	cmds := section(t, page, "Commands")
	doc := items(cmds)
	code := ctlCommands(t)
	var names []string
	for _, c := range code {
		names = append(names, c.name)
	}
	for _, c := range code {
		if !contains(doc, c.name) {
			t.Errorf("vmstatedctl.8: command %s has no .It Cm %s entry under Commands", c.name, c.name)
			continue
		}
		block := commandBlock(cmds, c.name, names)
		for _, m := range flagInArgs.FindAllStringSubmatch(c.args, -1) {
			if !strings.Contains(block, "Fl "+m[1]) {
				t.Errorf("vmstatedctl.8: %s: flag -%s is not documented", c.name, m[1])
			}
		}
		for _, a := range c.aliases {
			if !strings.Contains(block, ".Cm "+a+"\n") {
				t.Errorf("vmstatedctl.8: %s: alias %s is not documented", c.name, a)
			}
		}
	}
	for _, d := range doc {
		if !contains(names, d) {
			t.Errorf("vmstatedctl.8 documents a command %s vmstatedctl does not have", d)
		}
	}

	synopsis := section(t, page, "SYNOPSIS")
	for _, fl := range flagNames(t, parseGo(t, filepath.Join("..", "cmd", "vmstatedctl", "run.go")), "run") {
		if !strings.Contains(synopsis, "Fl "+fl) {
			t.Errorf("vmstatedctl.8: global flag -%s is not in the SYNOPSIS", fl)
		}
		if !regexp.MustCompile(`(?m)^\.It Fl ` + fl + `\b`).MatchString(page) {
			t.Errorf("vmstatedctl.8: global flag -%s has no .It Fl %s entry", fl, fl)
		}
	}
}

// commandBlock returns the part of the Commands list that documents name:
// from its first entry to the next other command's entry.
func commandBlock(cmds, name string, names []string) string {
	loc := regexp.MustCompile(`(?m)^\.It (?:Xo\n)?\.?Cm ` + regexp.QuoteMeta(name) + `\b`).FindStringIndex(cmds)
	if loc == nil {
		return ""
	}
	rest := cmds[loc[1]:]
	end := len(rest)
	for _, m := range itCm.FindAllStringSubmatchIndex(rest, -1) {
		// A command with several forms (create disk, create vm) has
		// an entry for each; its block spans them all.
		if n := rest[m[2]:m[3]]; n != name && contains(names, n) {
			end = m[0]
			break
		}
	}
	return rest[:end]
}

var (
	literalBlock = regexp.MustCompile(`(?ms)^\.Bd -literal[^\n]*\n(.*?)\n\.Ed$`)
	vmBlock      = regexp.MustCompile(`^([a-z][a-z0-9_-]*) \{`)
	pathComment  = regexp.MustCompile(`^# /etc/vmstated/([a-z0-9_./-]+)\n`)
)

// TestExampleConfigsLoad writes the VM configs shown in the pages into a
// config root and loads it with the daemon's loader: an example that no
// longer loads fails here. Only what depends on the host is let through:
// configfiles, owners and groups that do not exist here.
func TestExampleConfigsLoad(t *testing.T) {
	for _, page := range []string{"vmstated.conf.5", "vmstated.8"} {
		t.Run(page, func(t *testing.T) {
			root := t.TempDir()
			n := 0
			for _, m := range literalBlock.FindAllStringSubmatch(readPage(t, page), -1) {
				text := strings.NewReplacer(`\(dq`, `"`, `\e`, `\`, `\&`, ``).Replace(m[1]) + "\n"
				var path string
				if pc := pathComment.FindStringSubmatch(text); pc != nil {
					path = filepath.Join(root, pc[1])
				} else if vb := vmBlock.FindStringSubmatch(text); vb != nil {
					path = filepath.Join(root, vb[1], "config")
				} else {
					continue
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n < 2 {
				t.Fatalf("found only %d example configs in %s", n, page)
			}
			snap := config.LoadRoot(root, config.LoadOptions{DefaultHypervisor: config.HypervisorBhyve})
			if snap.RootErr != nil {
				t.Fatal(snap.RootErr)
			}
			for _, d := range snap.Diagnostics() {
				hostDependent := d.Key == "configfile" || d.Key == "owner" || d.Key == "group"
				if !hostDependent {
					t.Errorf("%s example: %s", page, d)
				} else {
					t.Logf("host-dependent: %s", d)
				}
			}
			t.Logf("%s: %d example files, VMs %v, invalid %d, ignored %v", page, n, snap.Names(), len(snap.Invalid), snap.Ignored)
		})
	}
}
