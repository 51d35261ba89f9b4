package deporder

import (
	"fmt"
	"testing"
)

func TestStopWaves(t *testing.T) {
	deps := map[string][]string{"a": nil, "b": {"a"}, "c": {"a", "b"}, "d": nil, "x": {"x"}}
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"a", "b", "c", "d"}, "[[c d] [b] [a]]"},
		// c is not being stopped, but a still waits for b, which waits for c.
		{[]string{"a", "b"}, "[[b] [a]]"},
		{[]string{"a"}, "[[a]]"},
		{nil, "[]"},
		{[]string{"x"}, "[[x]]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(StopWaves(deps, tt.names)); got != tt.want {
			t.Errorf("StopWaves(%v) = %s, want %s", tt.names, got, tt.want)
		}
	}
}
