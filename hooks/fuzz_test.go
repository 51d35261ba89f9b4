package hooks

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLineSink feeds arbitrary output, cut into arbitrary chunks and
// alternated between stdout and stderr, through the line splitter: every
// Write must be one tagged line, and no byte may be lost or moved to the
// other stream.
func FuzzLineSink(f *testing.F) {
	f.Add([]byte("one\ntwo\n"), []byte("err\n"), uint8(3))
	f.Add([]byte("no newline"), []byte("\n\n\n"), uint8(1))
	f.Add([]byte{}, []byte("x"), uint8(0))
	f.Fuzz(func(t *testing.T, out, errOut []byte, chunk uint8) {
		log := &lineLog{}
		s := newLineSink(log)
		so := s.stream(nil, "[o] ")
		se := s.stream(nil, "[e] ")
		size := int(chunk%16) + 1
		o, e := out, errOut
		for len(o) > 0 || len(e) > 0 {
			n := min(size, len(o))
			so.feed(o[:n])
			o = o[n:]
			n = min(size, len(e))
			se.feed(e[:n])
			e = e[n:]
		}
		s.detach()
		_, bad := log.snapshot()
		if len(bad) > 0 {
			t.Fatalf("writes that were not one line: %q", bad)
		}
		for _, tc := range []struct {
			prefix string
			in     []byte
		}{{"[o] ", out}, {"[e] ", errOut}} {
			got := log.stream(tc.prefix)
			want := bytes.ReplaceAll(tc.in, []byte("\n"), nil)
			if joined := strings.Join(got, ""); joined != string(want) {
				t.Fatalf("stream %s: got %q, want the bytes of %q", tc.prefix, got, tc.in)
			}
			if lines := bytes.Count(tc.in, []byte("\n")); len(got) < lines {
				t.Fatalf("stream %s: %d lines for %d newlines", tc.prefix, len(got), lines)
			}
		}
	})
}

// FuzzEnviron checks that any config map yields a usable environment:
// every entry KEY=value with a well-formed key and no NUL byte.
func FuzzEnviron(f *testing.F) {
	f.Add("memory", "2048", "web", "because")
	f.Add("qemu.disk\x00", "a\x00b", "", "\n")
	f.Fuzz(func(t *testing.T, key, value, name, reason string) {
		env := Env{Name: name, State: "start_network", Reason: reason, Config: map[string]string{key: value}}
		for _, kv := range env.Environ() {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
				t.Fatalf("bad environment entry %q", kv)
			}
			for _, r := range k {
				if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
					t.Fatalf("bad variable name %q", k)
				}
			}
		}
	})
}
