package exec

import (
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in      string
		want    syscall.Signal
		wantErr bool
	}{
		{"TERM", syscall.SIGTERM, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"int", syscall.SIGINT, false},
		{" hup ", syscall.SIGHUP, false},
		{"9", syscall.SIGKILL, false},
		{"USR1", syscall.SIGUSR1, false},
		{"", 0, true},
		{"NOPE", 0, true},
		{"SIG", 0, true},
		{"0", 0, true},
		{"-3", 0, true},
		{"999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSignal(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
