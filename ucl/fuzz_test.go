package ucl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a = 1", "vm \"x\" { cpus = 2; memory = 8G; timeout = 30s }", "[1, 2, {a = b}]",
		"a = <<EOD\nx\nEOD\n", "/* a /* b */ */ x = 'y\\'z'", "a = \"\\u00e9\\ud83d\\ude42\"",
		"s foo = { }", "a b c { d = [1,,2] }", "x = 0x10k; y = 1.5kb; z = 10Ms", "{\"a\": 1 \"b\": 2}",
		".include \"x\"", "a = $X ${Y} $$", "\uFEFFa = 1", "k = v\r\n", "a = -9223372036854775808",
	} {
		f.Add([]byte(s))
	}
	// Seed with the conformance corpus when it is there.
	{
		dir := os.Getenv("UCL_CONFORMANCE_DIR")
		if dir == "" {
			dir = filepath.Join("..", "..", "shared", "ucl-conformance")
		}
		for _, pat := range []string{"valid/*.ucl", "invalid/*.ucl", "optional/*/*.ucl"} {
			files, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, file := range files {
				if data, err := os.ReadFile(file); err == nil {
					f.Add(data)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []Options{{}, {LowercaseKeys: true, Vars: map[string]string{"X": "1"}}} {
			n, err := Parse(data, opts)
			if err != nil {
				if _, ok := err.(*ParseError); !ok {
					t.Fatalf("error of type %T: %v", err, err)
				}
				continue
			}
			if n.Kind != Object && n.Kind != Array {
				t.Fatalf("root kind %v", n.Kind)
			}
			if !n.hasNonFinite() {
				if _, err := json.Marshal(n.Value()); err != nil {
					t.Fatalf("Value not marshalable: %v", err)
				}
			}
		}
		// Unmarshal into *any builds plain values without a tree; it must
		// agree with Parse + Value.
		var v any
		errU := Unmarshal(data, &v)
		n, errP := Parse(data, Options{})
		if (errU == nil) != (errP == nil) {
			t.Fatalf("Unmarshal error %v, Parse error %v", errU, errP)
		}
		if errP == nil && !n.hasNonFinite() && !reflect.DeepEqual(v, n.Value()) {
			t.Fatalf("Unmarshal gave %#v, Parse gave %#v", v, n.Value())
		}
	})
}
