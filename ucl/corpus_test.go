package ucl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// corpusDir finds the conformance corpus: $UCL_CONFORMANCE_DIR, or the
// shared fixtures next to the repository.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("UCL_CONFORMANCE_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "ucl-conformance")
	}
	if _, err := os.Stat(filepath.Join(dir, "valid")); err != nil {
		t.Skipf("conformance corpus not found at %s (set UCL_CONFORMANCE_DIR): %v", dir, err)
	}
	return dir
}

// loadExpected decodes an expected .json file, keeping integers apart from
// floats: an integer becomes int64, a number with '.' or an exponent float64.
func loadExpected(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return normalizeJSON(t, v)
}

func normalizeJSON(t *testing.T, v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			f, err := x.Float64()
			if err != nil {
				t.Fatalf("bad float %s: %v", s, err)
			}
			return f
		}
		i, err := x.Int64()
		if err != nil {
			t.Fatalf("bad int %s: %v", s, err)
		}
		return i
	case []any:
		for i := range x {
			x[i] = normalizeJSON(t, x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeJSON(t, x[k])
		}
	}
	return v
}

// diff describes the first difference between got and want, with types.
func diff(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %T %#v, want object", path, got, got)
		}
		for k := range w {
			if _, ok := g[k]; !ok {
				return fmt.Sprintf("%s: missing key %q", path, k)
			}
			if d := diff(path+"."+k, g[k], w[k]); d != "" {
				return d
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s: unexpected key %q = %#v", path, k, g[k])
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: got %T %#v, want array", path, got, got)
		}
		if len(g) != len(w) {
			return fmt.Sprintf("%s: got %d elements %#v, want %d %#v", path, len(g), g, len(w), w)
		}
		for i := range w {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if reflect.TypeOf(got) != reflect.TypeOf(want) || got != want {
		return fmt.Sprintf("%s: got %T %#v, want %T %#v", path, got, got, want, want)
	}
	return ""
}

func checkValid(t *testing.T, ucl, jsonPath string) {
	data, err := os.ReadFile(ucl)
	if err != nil {
		t.Fatal(err)
	}
	root, err := Parse(data, Options{Filename: filepath.Base(ucl)})
	if err != nil {
		t.Fatalf("rejected: %v", err)
	}
	want := loadExpected(t, jsonPath)
	if d := diff("$", root.Value(), want); d != "" {
		t.Errorf("%s", d)
	}
	// Unmarshal into *any must agree with Parse + Value.
	var v any
	if err := Unmarshal(data, &v); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if d := diff("$", v, want); d != "" {
		t.Errorf("Unmarshal: %s", d)
	}
}

func checkInvalid(t *testing.T, ucl string) {
	data, err := os.ReadFile(ucl)
	if err != nil {
		t.Fatal(err)
	}
	root, err := Parse(data, Options{Filename: filepath.Base(ucl)})
	if err == nil {
		t.Fatalf("accepted, got %#v", root.Value())
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *ParseError: %v", err, err)
	}
	if pe.Pos.Line < 1 || pe.Pos.Col < 1 || pe.Pos.File != filepath.Base(ucl) {
		t.Errorf("error without a proper position: %#v", pe.Pos)
	}
	if !errors.Is(err, ErrSyntax) {
		t.Errorf("error does not wrap ErrSyntax")
	}
	var v any
	if err := Unmarshal(data, &v); err == nil {
		t.Errorf("Unmarshal accepted it")
	}
	t.Logf("%v", err)
}

func TestConformanceValid(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "valid", "*.ucl"))
	if len(files) == 0 {
		t.Fatal("no valid cases")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".ucl"), func(t *testing.T) {
			checkValid(t, f, strings.TrimSuffix(f, ".ucl")+".json")
		})
	}
}

func TestConformanceInvalid(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "invalid", "*.ucl"))
	if len(files) == 0 {
		t.Fatal("no invalid cases")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".ucl"), func(t *testing.T) {
			checkInvalid(t, f)
		})
	}
}

// TestConformanceOptional checks the libucl quirks in optional/ against the
// choices documented in the package doc: "match" cases must give libucl's
// result, the others ours.
func TestConformanceOptional(t *testing.T) {
	dir := corpusDir(t)
	decisions := map[string]any{
		// Matches libucl.
		"quirk_double_comma_in_array": "match",
		"quirk_json_missing_colon":    "match",
		"quirk_json_missing_comma":    "match",
		"quirk_ms_uppercase_M":        "match",
		"macro_include":               "reject",
		"macro_priority":              "reject",
		// Differs from libucl on purpose.
		"quirk_bom_in_first_key":            map[string]any{"a": int64(1)},
		"quirk_float_with_byte_suffix":      map[string]any{"a": int64(1536), "b": int64(3040870)},
		"quirk_extra_close_after_top_brace": "reject",
		"quirk_trailing_after_top_brace":    "reject",
	}
	files, _ := filepath.Glob(filepath.Join(dir, "optional", "*", "*.ucl"))
	if len(files) == 0 {
		t.Fatal("no optional cases")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".ucl")
		t.Run(name, func(t *testing.T) {
			dec, ok := decisions[name]
			if !ok {
				t.Fatalf("no decision recorded for optional case %s", name)
			}
			switch dec {
			case "match":
				checkValid(t, f, strings.TrimSuffix(f, ".ucl")+".json")
			case "reject":
				checkInvalid(t, f)
			default:
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				n, err := Parse(data, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if d := diff("$", n.Value(), dec); d != "" {
					t.Error(d)
				}
			}
		})
	}
}
