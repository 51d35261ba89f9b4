package ucl

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string, opts Options) *Node {
	t.Helper()
	n, err := Parse([]byte(src), opts)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return n
}

func TestValues(t *testing.T) {
	tests := []struct {
		name, src string
		want      any
	}{
		{"equals", "a = 1", map[string]any{"a": int64(1)}},
		{"colon", "a: 1", map[string]any{"a": int64(1)}},
		{"space", "a 1", map[string]any{"a": int64(1)}},
		{"next line", "a =\n  1", map[string]any{"a": int64(1)}},
		{"braces", "{ a = 1 }", map[string]any{"a": int64(1)}},
		{"empty", "", map[string]any{}},
		{"comments only", "# x\n/* y */\n", map[string]any{}},
		{"top array", "[1, two]", []any{int64(1), "two"}},
		{"trailing separators", "a = 1;;\nb = {c = 1,}; d = [1, 2,]", map[string]any{"a": int64(1), "b": map[string]any{"c": int64(1)}, "d": []any{int64(1), int64(2)}}},
		{"dotted key", "a.b.c = 1", map[string]any{"a.b.c": int64(1)}},
		{"quoted key", `"a b" = 1`, map[string]any{"a b": int64(1)}},
		{"section", `vm "x" { a = 1 }`, map[string]any{"vm": map[string]any{"x": map[string]any{"a": int64(1)}}}},
		{"section multi", `a b c { }`, map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{}}}}},
		{"section array", `tags prod [1]`, map[string]any{"tags": map[string]any{"prod": []any{int64(1)}}}},
		{"scalar words", `key word value`, map[string]any{"key": "word value"}},
		{"repeat", "a = 1; a = 2", map[string]any{"a": []any{int64(1), int64(2)}}},
		{"repeat arrays", "a = [1]; a = [2]", map[string]any{"a": []any{[]any{int64(1)}, []any{int64(2)}}}},
		{"objects not merged", "vm { a = 1 } vm { b = 2 }", map[string]any{"vm": []any{map[string]any{"a": int64(1)}, map[string]any{"b": int64(2)}}}},
		{"hex", "a = 0x1f; b = -0x10; c = 0x10k", map[string]any{"a": int64(31), "b": int64(-16), "c": int64(16000)}},
		{"sizes", "a = 10k; b = 10kb; c = 10m; d = 2GB; e = 1.5k", map[string]any{"a": int64(10000), "b": int64(10240), "c": int64(10000000), "d": int64(2147483648), "e": 1500.0}},
		{"times", "a = 30s; b = 5ms; c = 1min; d = 1.5h; e = 1d; f = 1w; g = 1y; h = 2ks", map[string]any{"a": 30.0, "b": 0.005, "c": 60.0, "d": 5400.0, "e": 86400.0, "f": 604800.0, "g": 31536000.0, "h": 2000.0}},
		{"suffix then space", "a = 30s ;\nb = 8G \n", map[string]any{"a": "30s", "b": "8G"}},
		{"number then space", "a = 1 ;", map[string]any{"a": int64(1)}},
		{"number then block comment", "a = 1 /* c */", map[string]any{"a": "1"}},
		{"number then hash comment", "a = 1 # c", map[string]any{"a": int64(1)}},
		{"not numbers", "a = +5; b = .5; c = 1.5.3; d = 10 k; e = 1_000; f = 0x; g = 1h30m", map[string]any{"a": "+5", "b": ".5", "c": "1.5.3", "d": "10 k", "e": "1_000", "f": "0x", "g": "1h30m"}},
		{"floats", "a = 1.; b = 1e-10; c = -2.5", map[string]any{"a": 1.0, "b": 1e-10, "c": -2.5}},
		{"int edges", "a = 9223372036854775807; b = -9223372036854775808; c = 007", map[string]any{"a": int64(math.MaxInt64), "b": int64(math.MinInt64), "c": int64(7)}},
		{"bools", "a = yes; b = OFF; c = True; d = \"true\"", map[string]any{"a": true, "b": false, "c": true, "d": "true"}},
		{"null", "a = null; b = NULL", map[string]any{"a": nil, "b": "NULL"}},
		{"unquoted", "a = A simple VM ;\nb = http://h/p\nc = a\\;b", map[string]any{"a": "A simple VM", "b": "http://h/p", "c": "a;b"}},
		{"double slash", "// x", map[string]any{"//": "x"}},
		{"braces in value", "s = foo { a = 1 }", map[string]any{"s": "foo { a = 1 }"}},
		{"dquote escapes", `a = "x\ny\t\u00e9\/\q"`, map[string]any{"a": "x\ny\té/q"}},
		{"surrogate pair", `a = "\ud83d\ude42"`, map[string]any{"a": "🙂"}},
		{"squote", `a = 'it\'s \n raw'`, map[string]any{"a": `it's \n raw`}},
		{"heredoc", "a = <<EOD\nline1\n  line2\nEOD\nb = 1", map[string]any{"a": "line1\n  line2", "b": int64(1)}},
		{"heredoc in array", "a = [<<EOD\nx\nEOD\n, 2]", map[string]any{"a": []any{"x", int64(2)}}},
		{"nested comments", "/* a /* b */ c */ x = 1", map[string]any{"x": int64(1)}},
		{"dollar literal", `a = "$VAR"; b = ${X}`, map[string]any{"a": "$VAR", "b": "${X}"}},
		{"crlf", "a = 1\r\nb = 10s\r\n", map[string]any{"a": int64(1), "b": 10.0}},
		// Choices for the optional corpus cases (see the package doc).
		{"bom stripped", "\uFEFFa = 1", map[string]any{"a": int64(1)}},
		{"float byte suffix", "a = 1.5kb; b = 2.9mb", map[string]any{"a": int64(1536), "b": int64(3040870)}},
		{"empty array slots", "a = [1,,2,,]", map[string]any{"a": []any{int64(1), int64(2)}}},
		{"json missing colon", `{"a" 1}`, map[string]any{"a": int64(1)}},
		{"json missing comma", `{"a": 1 "b": 2}`, map[string]any{"a": `1 "b": 2`}},
		{"Ms is milliseconds", "a = 10Ms", map[string]any{"a": 0.01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.src, Options{}).Value()
			if d := diff("$", got, tt.want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestNanInf(t *testing.T) {
	n := mustParse(t, "a = nan; b = inf; c = NaN", Options{})
	if !math.IsNaN(n.Get("a").Float) || !math.IsInf(n.Get("b").Float, 1) || n.Get("c").Kind != String {
		t.Fatalf("got %v %v %v", n.Get("a"), n.Get("b"), n.Get("c"))
	}
}

func TestKindsAndText(t *testing.T) {
	n := mustParse(t, "a = 8G; b = 30s; c = 14.0; d = yes; e = x", Options{})
	for key, want := range map[string]struct {
		kind Kind
		text string
	}{"a": {Int, "8G"}, "b": {Time, "30s"}, "c": {Float, "14.0"}, "d": {Bool, "yes"}, "e": {String, "x"}} {
		v := n.Get(key)
		if v.Kind != want.kind || v.Str != want.text {
			t.Errorf("%s: got %v %q, want %v %q", key, v.Kind, v.Str, want.kind, want.text)
		}
	}
	if Object.String() != "object" || Kind(99).String() != "Kind(99)" {
		t.Error("Kind.String")
	}
	if n.Get("zz") != nil || n.Get("a").Get("x") != nil || (*Node)(nil).Get("a") != nil {
		t.Error("Get on missing")
	}
}

func TestImplicitAndPositions(t *testing.T) {
	n := mustParse(t, "a = 1\nb {\n  c = \"x\"\n}\na = 2\n", Options{Filename: "f.conf"})
	a := n.Get("a")
	if a.Kind != Array || !a.Implicit || len(a.Items) != 2 {
		t.Fatalf("a: %+v", a)
	}
	if got := a.Items[1].Pos.String(); got != "f.conf:5:5" {
		t.Errorf("pos of second a: %s", got)
	}
	c := n.Get("b").Get("c")
	if c.Pos.String() != "f.conf:3:7" || n.Fields[1].KeyPos.String() != "f.conf:2:1" {
		t.Errorf("positions: %s %s", c.Pos, n.Fields[1].KeyPos)
	}
	if (Pos{Line: 2, Col: 3}).String() != "2:3" {
		t.Error("Pos without file")
	}
	// Columns count characters, not bytes.
	n = mustParse(t, "é = ü", Options{})
	if n.Get("é").Pos.Col != 5 {
		t.Errorf("rune column: %v", n.Get("é").Pos)
	}
	if strings.Count(mustParse(t, "[1,[2]]", Options{}).Items[1].Pos.String(), ":") != 1 {
		t.Error("array pos")
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, src, pos, msg string
	}{
		{"unterminated string", "a = 1\nb = \"abc\n", "f:2:5", "unterminated string started at 2:5"},
		{"unterminated object", "vm {\n a = 1\n", "f:1:4", "unterminated object started at 1:4"},
		{"unterminated array", "a = [1,\n2", "f:1:5", "unterminated array started at 1:5"},
		{"unterminated comment", "a = 1\n/* x", "f:2:1", "unterminated comment started at 2:1"},
		{"unterminated heredoc", "a = <<EOD\nx\n", "f:1:5", "unterminated heredoc started at 1:5"},
		{"int overflow", "a = 9223372036854775808", "f:1:5", "out of range"},
		{"size overflow", "a = 9223372036854775807k", "f:1:5", "out of range"},
		{"float overflow", "a = 1e400", "f:1:5", "out of range"},
		{"missing value", "a = ;", "f:1:5", "missing value"},
		{"no value at eof", "a =", "f:1:1", "has no value"},
		{"brace after key", "x{y=1}", "f:1:2", "invalid character '{'"},
		{"stray close", "a = 1\n}", "f:2:1", "no open bracket"},
		{"missing separator", `a = "x" "y"`, "f:1:9", "separate values"},
		{"top scalar", "42\n", "f:1:3", "end of the line"},
		{"macro off", ".include \"x\"", "f:1:1", "macros"},
		{"single-quoted key", "'a' = 1", "f:1:1", "single-quoted"},
		{"empty key", `"" = 1`, "f:1:1", "empty keys"},
		{"bad unicode", `a = "\u12G4"`, "f:1:10", `\u escape`},
		{"control char", "a = \"x\ty\"", "f:1:7", "tab"},
		{"trailing after top brace", "{ a = 1 }\nb = 2", "f:2:1", "after the closing '}'"},
		{"extra close after top brace", "{ a = 1 }}", "f:1:10", "after the closing '}'"},
		{"section with equals", "s foo = { a = 1 }", "f:1:9", "key must begin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), Options{Filename: "f"})
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a ParseError", err)
			}
			if pe.Pos.String() != tt.pos || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want position %s and %q", err, tt.pos, tt.msg)
			}
		})
	}
}

func TestDepthLimit(t *testing.T) {
	for _, src := range []string{
		strings.Repeat("[", 5000),
		"a = " + strings.Repeat("{b = ", 5000),
		strings.Repeat("a ", 5000) + "{}",
	} {
		_, err := Parse([]byte(src), Options{})
		if err == nil || !strings.Contains(err.Error(), "nested more than") {
			t.Errorf("deep input: got %v", err)
		}
	}
}

func TestLowercaseKeys(t *testing.T) {
	n := mustParse(t, "BsdVM { ConfigFile = X; OS = FreeBSD; os = freebsd }", Options{LowercaseKeys: true})
	vm := n.Get("bsdvm")
	if vm == nil || vm.Get("configfile").Str != "X" {
		t.Fatalf("got %#v", n.Value())
	}
	if os := vm.Get("os"); os.Kind != Array || len(os.Items) != 2 {
		t.Errorf("OS and os should collect: %#v", os.Value())
	}
	if vm.Get("configfile").Str != "X" {
		t.Error("values keep their case")
	}
}

func TestVariables(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vm.conf")
	vars := map[string]string{"NAME": "web", "ABI": "FreeBSD:14", "FILENAME": "ignored"}
	src := `a = "$NAME-1"; b = "${NAME}x"; c = $ABItest; d = "$UNKNOWN ${NOPE}"; e = "$FILENAME"; f = $CURDIR/disk; g = '$NAME'; h = "$$ $NAME"; i = "$$5"` + "\nj = <<EOD\n$NAME\nEOD\n"
	n := mustParse(t, src, Options{Filename: file, Vars: vars})
	want := map[string]any{"a": "web-1", "b": "webx", "c": "FreeBSD:14test", "d": "$UNKNOWN ${NOPE}",
		"e": file, "f": dir + "/disk", "g": "$NAME", "h": "$ web", "i": "$$5", "j": "web"}
	if d := diff("$", n.Value(), want); d != "" {
		t.Error(d)
	}
	// Without Vars or Macros, nothing expands.
	n = mustParse(t, `a = "$NAME"`, Options{})
	if n.Get("a").Str != "$NAME" {
		t.Error("expanded without Vars")
	}
	// Macros alone turn on FILENAME and CURDIR.
	n = mustParse(t, `a = "$CURDIR"`, Options{Filename: file, Macros: true})
	if n.Get("a").Str != dir {
		t.Errorf("CURDIR with Macros: %q", n.Get("a").Str)
	}
	// Without a file name, FILENAME is "undef" and CURDIR the working directory.
	wd, _ := os.Getwd()
	n = mustParse(t, `a = "$FILENAME"; b = "$CURDIR"`, Options{Vars: map[string]string{}})
	if n.Get("a").Str != "undef" || n.Get("b").Str != wd {
		t.Errorf("no file: %#v", n.Value())
	}
	// Keys are never expanded.
	n = mustParse(t, `"$NAME" = 1`, Options{Vars: vars})
	if n.Get("$NAME") == nil {
		t.Error("key expanded")
	}
}

func TestLongSectionLineIsLinear(t *testing.T) {
	// 900 section names and 1 MB of text before the '{': each name must not
	// rescan the line.
	src := strings.Repeat("a ", 900) + strings.Repeat("x", 1<<20) + " {}"
	n, err := Parse([]byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Get("a") == nil {
		t.Fatal("no a")
	}
}
