//go:build linux

package process

import "testing"

func TestParseStatLinux(t *testing.T) {
	rest := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n"
	tests := []struct {
		name    string
		stat    string
		want    uint64
		state   byte
		wantErr bool
	}{
		{"plain", "12 (sleep)" + rest, 4242, 'S', false},
		{"spaces and parens", "12 (a) b (c) d)" + rest, 4242, 'S', false},
		{"zombie", "12 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 20", 99, 'Z', false},
		{"no paren", "12 sleep S 1", 0, 0, true},
		{"short", "12 (x) S 1 2 3", 0, 0, true},
		{"bad number", "12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x 20", 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, state, err := parseStat(12, []byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if st != tt.want || state != tt.state {
				t.Errorf("got %d %q, want %d %q", st, state, tt.want, tt.state)
			}
		})
	}
}
