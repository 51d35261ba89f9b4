package daemon

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// notifyEnv names the service manager's notification socket (systemd's
// sd_notify protocol): an absolute path, or on Linux "@name" for an abstract
// socket.
const notifyEnv = "NOTIFY_SOCKET"

// Notify sends state (newline-separated VAR=value assignments such as
// "READY=1") as one datagram to the socket named by NOTIFY_SOCKET. Without
// NOTIFY_SOCKET it does nothing and returns nil, so callers need not know
// whether a service manager is watching. The variable is left in the
// environment; processes the daemon starts should not get it (a hook that
// sends READY=1 would confuse the manager), so whoever builds their
// environment drops it.
func Notify(state string) error {
	addr := os.Getenv(notifyEnv)
	if addr == "" {
		return nil
	}
	switch {
	case strings.HasPrefix(addr, "@"):
		// The net package turns a leading '@' into the abstract namespace's
		// leading NUL on Linux; elsewhere there is no such namespace.
		if runtime.GOOS != "linux" {
			return fmt.Errorf("notify: %s=%q is an abstract socket, which only Linux has", notifyEnv, addr)
		}
	case strings.HasPrefix(addr, "/"):
	default:
		return fmt.Errorf("notify: %s=%q is neither an absolute path nor @abstract; unset it or fix the service definition", notifyEnv, addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %s: %w", addr, err)
	}
	return nil
}

// NotifyReady tells the service manager start-up (or a reload) is complete.
func NotifyReady() error { return Notify("READY=1") }

// NotifyStopping tells the service manager the daemon is shutting down.
func NotifyStopping() error { return Notify("STOPPING=1") }

// NotifyReloading tells the service manager the daemon is rescanning its
// configs; send NotifyReady when done. The monotonic timestamp is required
// by systemd's Type=notify-reload services.
func NotifyReloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("notify: read monotonic clock: %w", err)
	}
	usec := ts.Nano() / 1000
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10))
}

// NotifyStatus sets the one-line status the service manager shows (for
// example "3 VMs running, 1 failed"). Line breaks are replaced by spaces.
func NotifyStatus(status string) error {
	return Notify("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(status))
}
