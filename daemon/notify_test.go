package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenNotify opens a datagram socket like a service manager's and points
// NOTIFY_SOCKET at it.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(notifyEnv, name)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	// A deadlock guard only: the datagram was queued before we read.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	sockets := []struct{ name, addr string }{
		{"path", filepath.Join(shortDir(t), "notify")},
	}
	if runtime.GOOS == "linux" {
		sockets = append(sockets, struct{ name, addr string }{
			"abstract", fmt.Sprintf("@vmstated-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
		})
	}
	for _, s := range sockets {
		t.Run(s.name, func(t *testing.T) {
			conn := listenNotify(t, s.addr)
			if strings.HasPrefix(s.addr, "@") {
				if _, err := os.Stat(s.addr); err == nil {
					t.Fatalf("%s became a file, not an abstract socket", s.addr)
				}
			}
			for _, tc := range []struct {
				name string
				send func() error
				want string
			}{
				{"ready", NotifyReady, "READY=1"},
				{"stopping", NotifyStopping, "STOPPING=1"},
				{"status", func() error { return NotifyStatus("3 VMs running,\n1 failed") }, "STATUS=3 VMs running, 1 failed"},
				{"raw", func() error { return Notify("STATUS=x\nREADY=1") }, "STATUS=x\nREADY=1"},
			} {
				if err := tc.send(); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if got := receive(t, conn); got != tc.want {
					t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
				}
			}

			if err := NotifyReloading(); err != nil {
				t.Fatal(err)
			}
			got := receive(t, conn)
			usec, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
			if n, err := strconv.ParseInt(usec, 10, 64); !ok || err != nil || n <= 0 {
				t.Errorf("reloading: got %q, want RELOADING=1 and a positive MONOTONIC_USEC", got)
			}
		})
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv(notifyEnv, "")
	os.Unsetenv(notifyEnv)
	if err := NotifyReady(); err != nil {
		t.Errorf("without %s: %v, want nil", notifyEnv, err)
	}
}

func TestNotifyBadSocket(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"relative/notify", "neither an absolute path nor @abstract"},
		{"vsock:2:1234", "neither an absolute path nor @abstract"},
		{filepath.Join(shortDir(t), "nobody-listens"), "no such file"},
	} {
		t.Setenv(notifyEnv, tc.addr)
		err := NotifyReady()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: error %v, want it to say %q", notifyEnv, tc.addr, err, tc.want)
		}
	}
}

func BenchmarkNotify(b *testing.B) {
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	b.Setenv(notifyEnv, name)
	buf := make([]byte, 64)
	for b.Loop() {
		if err := NotifyStatus("3 VMs running"); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
