package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the message decoder and to the
// stream reader. Neither may panic; every failure must be a protocol or
// closed-connection error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		testGreeting,
		`{"return": {}, "id": 1}`,
		`{"return": {"status": "running", "running": true}, "id": 18446744073709551615}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": "a"}`,
		`{"error": {"class": "GenericError", "desc": "x"}}`,
		`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1, "microseconds": 2}}`,
		`{"event": "STOP", "timestamp": {"seconds": -1, "microseconds": 99999999}}`,
		`{"return": 1}{"event": "X"}` + "\r\n" + `{"return": [1,2]}`,
		`{"QMP": null}`,
		`{"id": 1}`,
		`[]`, `null`, `"x"`, `{`, "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("decodeMessage error not ErrProtocol: %v", err)
		}
		if err == nil && !json.Valid(bytes.TrimSpace(b)) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if m.kind == kindError && m.err == nil {
			t.Fatal("error message without an error")
		}

		// The stream reader over the same bytes.
		c := &Client{dec: newDecoder(bytes.NewReader(b))}
		for range 1000 {
			_, err := c.read()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrClosed) {
					t.Fatalf("read error %v is neither ErrProtocol nor ErrClosed", err)
				}
				break
			}
		}
	})
}
