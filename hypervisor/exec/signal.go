package exec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ParseSignal reads a signal as written in a config: "TERM", "SIGTERM",
// "term" or a number such as "15".
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("%w: empty signal name", ErrBadOptions)
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n <= 0 || unix.SignalName(syscall.Signal(n)) == "" {
			return 0, fmt.Errorf("%w: %d is not a signal number on this system", ErrBadOptions, n)
		}
		return syscall.Signal(n), nil
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	if sig := unix.SignalNum(t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%w: unknown signal %q (use a name such as TERM, INT or HUP)", ErrBadOptions, s)
}
