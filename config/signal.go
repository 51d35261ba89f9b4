package config

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmstated/vmstated/ucl"
)

// signal reads a signal name (TERM, SIGTERM, any case) or number and
// returns its canonical "SIGTERM" form.
func (d *decoder) signal(key string, n *ucl.Node) (string, bool) {
	switch n.Kind {
	case ucl.Int:
		if name := unix.SignalName(unix.Signal(n.Int)); name != "" && n.Int > 0 && n.Int < 128 {
			return name, true
		}
	case ucl.String:
		s := strings.ToUpper(strings.TrimSpace(n.Str))
		if i, err := strconv.Atoi(s); err == nil {
			if name := unix.SignalName(unix.Signal(i)); name != "" && i > 0 {
				return name, true
			}
			break
		}
		if !strings.HasPrefix(s, "SIG") {
			s = "SIG" + s
		}
		if unix.SignalNum(s) != 0 {
			return s, true
		}
	}
	d.errf(n.Pos, key, "%s is not a signal of this host; write a name such as TERM, INT or HUP", describe(n))
	return "", false
}
