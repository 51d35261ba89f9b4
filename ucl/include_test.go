package ucl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// writeTree creates files (path -> content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestInclude(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"vm0/config":                 "name = vm0\n.include \"../templates/base.conf\"\ncpus = 4\n",
		"templates/base.conf":        "memory = 1G\ncpus = 1\n.include \"nested/disk.conf\"\n",
		"templates/nested/disk.conf": "{ disk { size = 20gb; } }\n",
	})
	n, err := ParseFile(filepath.Join(dir, "vm0/config"), Options{Macros: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "vm0", "memory": int64(1000000000), "cpus": []any{int64(1), int64(4)},
		"disk": map[string]any{"size": int64(21474836480)},
	}
	if d := diff("$", n.Value(), want); d != "" {
		t.Error(d)
	}
	// Positions inside included files name the included file.
	mem := n.Get("memory")
	if !strings.HasSuffix(mem.Pos.File, filepath.Join("templates", "base.conf")) || mem.Pos.Line != 1 || mem.Pos.Col != 10 {
		t.Errorf("memory pos: %v", mem.Pos)
	}
	size := n.Get("disk").Get("size")
	if !strings.HasSuffix(size.Pos.File, filepath.Join("nested", "disk.conf")) {
		t.Errorf("size pos: %v", size.Pos)
	}
	// Key order follows the include point.
	var keys []string
	for _, f := range n.Fields {
		keys = append(keys, f.Key)
	}
	if strings.Join(keys, ",") != "name,memory,cpus,disk" {
		t.Errorf("key order %v", keys)
	}
}

func TestIncludeTryAndGlob(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"main.conf":        ".include(try=true) \"missing.conf\"\n.try_include \"missing2.conf\"\n.include(glob=true) \"conf.d/*.conf\"\n.include(glob=true,try=true) \"none/*.conf\"\nlast = 1\n",
		"conf.d/20-b.conf": "order = b\n",
		"conf.d/10-a.conf": "order = a\n",
		"conf.d/30-c.conf": "order = c\n",
		"conf.d/skip.txt":  "order = x\n",
	})
	n, err := ParseFile(filepath.Join(dir, "main.conf"), Options{Macros: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"order": []any{"a", "b", "c"}, "last": int64(1)}
	if d := diff("$", n.Value(), want); d != "" {
		t.Error(d)
	}
}

func TestIncludeErrors(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"missing.conf": "a = 1\n.include \"nope.conf\"\n",
		"noglob.conf":  ".include(glob=true) \"none/*.conf\"\n",
		"loop-a.conf":  ".include \"loop-b.conf\"\n",
		"loop-b.conf":  "x = 1\n.include \"loop-a.conf\"\n",
		"self.conf":    ".include \"$FILENAME\"\n",
		"bad.conf":     ".include \"broken.conf\"\n",
		"broken.conf":  "ok = 1\nb = \"unterminated\n",
		"badarg.conf":  ".include(tyr=true) \"x\"\n",
		"unknown.conf": ".inherit \"x\"\n",
		"array.conf":   ".include \"arr.conf\"\n",
		"arr.conf":     "[1, 2]\n",
	})
	tests := []struct {
		file, pos, msg string
		is             error
	}{
		{"missing.conf", "missing.conf:2:1", "nope.conf", fs.ErrNotExist},
		{"noglob.conf", "noglob.conf:1:1", "no file matches", nil},
		{"loop-a.conf", "loop-b.conf:2:1", "include loop: ", ErrIncludeLoop},
		{"self.conf", "self.conf:1:1", "include loop", ErrIncludeLoop},
		{"bad.conf", "broken.conf:2:5", "unterminated string started at 2:5", nil},
		{"badarg.conf", "badarg.conf:1:1", `unknown .include parameter "tyr"`, nil},
		{"unknown.conf", "unknown.conf:1:1", "not supported", nil},
		{"array.conf", "arr.conf:1:1", "not an array", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := ParseFile(filepath.Join(dir, tt.file), Options{Macros: true})
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a ParseError", err)
			}
			if !strings.HasSuffix(pe.Pos.String(), tt.pos) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want position %s and %q", err, tt.pos, tt.msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%v does not wrap %v", err, tt.is)
			}
		})
	}
	// The loop message names the chain, and the included-from trail is kept.
	_, err := ParseFile(filepath.Join(dir, "loop-a.conf"), Options{Macros: true})
	if !strings.Contains(err.Error(), "loop-a.conf -> "+filepath.Join(dir, "loop-b.conf")+" -> "+filepath.Join(dir, "loop-a.conf")) ||
		!strings.Contains(err.Error(), "(included from "+filepath.Join(dir, "loop-a.conf")+":1:1)") {
		t.Errorf("loop message: %v", err)
	}
}

func TestPriority(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"vm.conf":       "cpus = 2\n.include(priority=5) \"override.conf\"\n.include \"low.conf\"\nmemory = 1G\n.priority 9\nmemory = 2G\n",
		"override.conf": "cpus = 8\n",
		"low.conf":      "cpus = 1\n",
	})
	n, err := ParseFile(filepath.Join(dir, "vm.conf"), Options{Macros: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"cpus": int64(8), "memory": int64(2000000000)}
	if d := diff("$", n.Value(), want); d != "" {
		t.Error(d)
	}
	if _, err := Parse([]byte(".priority 99\n"), Options{Macros: true}); err == nil {
		t.Error("priority 99 accepted")
	}
}

func TestIncludeCustomReader(t *testing.T) {
	files := map[string]string{"/etc/x/a.conf": ".include \"b.conf\"\nz = 1", "/etc/x/b.conf": "y = 2"}
	opts := Options{Macros: true, ReadFile: func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}}
	n, err := ParseFile("/etc/x/a.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff("$", n.Value(), map[string]any{"y": int64(2), "z": int64(1)}); d != "" {
		t.Error(d)
	}
}

func TestMacroSyntax(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.conf": ".priority(priority=3)\nx = 1\n.include /* comment */ \"b.conf\";\n.include { b.conf }\n",
		"b.conf": "x = 2\n",
		"c.conf": ".include\n\"b.conf\"\n",
	})
	n, err := ParseFile(filepath.Join(dir, "a.conf"), Options{Macros: true})
	if err != nil {
		t.Fatal(err)
	}
	// x = 1 has priority 3; the included x = 2 (priority 3 too, inherited) collect.
	if d := diff("$", n.Value(), map[string]any{"x": []any{int64(1), int64(2), int64(2)}}); d != "" {
		t.Error(d)
	}
	if _, err := ParseFile(filepath.Join(dir, "c.conf"), Options{Macros: true}); err == nil || !strings.Contains(err.Error(), "same line") {
		t.Errorf("value on next line: %v", err)
	}
}

func TestIncludeIntoNestedObject(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"main.conf":      "VM {\n  Name = a\n  .include \"tmpl/Disk.conf\"\n}\nother = 1\n",
		"tmpl/Disk.conf": "Disk { Size = 1kb; }\nName = b\n",
	})
	n, err := ParseFile(filepath.Join(dir, "main.conf"), Options{Macros: true, LowercaseKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"vm": map[string]any{"name": []any{"a", "b"}, "disk": map[string]any{"size": int64(1024)}}, "other": int64(1)}
	if d := diff("$", n.Value(), want); d != "" {
		t.Error(d)
	}
}

// Without Options.ReadFile, a FIFO or a device is refused at once and a
// huge file is not read past MaxFileSize.
func TestDefaultReaderRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, inc := range []string{fifo, "/dev/zero", dir} {
		_, err := Parse([]byte(".include \""+inc+"\"\n"), Options{Macros: true, Filename: filepath.Join(dir, "main.conf")})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf(".include %s: %v, want it refused as not a regular file", inc, err)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(big, Options{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ParseFile of a file over MaxFileSize: %v", err)
	}
}
