package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestReadProc(t *testing.T) {
	// A process whose name has blanks and a parenthesis, as QEMU's
	// -name can give it.
	dir := t.TempDir()
	odd := filepath.Join(dir, "a b)c")
	if err := os.Symlink("/bin/sleep", odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	st, err := readProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.rssBytes == 0 || st.cpuSeconds < 0 {
		t.Errorf("sleep: %+v", st)
	}
	self, err := readProc(os.Getpid())
	if err != nil || self.rssBytes < 1<<20 {
		t.Errorf("this test: %+v, %v", self, err)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}

func TestReadNetDev(t *testing.T) {
	old := sysClassNet
	defer func() { sysClassNet = old }()
	sysClassNet = t.TempDir()
	stats := filepath.Join(sysClassNet, "tap-web", "statistics")
	if err := os.MkdirAll(stats, 0o755); err != nil {
		t.Fatal(err)
	}
	vals := map[string]uint64{"rx_bytes": 1, "rx_packets": 2, "rx_errors": 3, "rx_dropped": 4, "tx_bytes": 5, "tx_packets": 6, "tx_errors": 7, "tx_dropped": 8}
	for f, v := range vals {
		if err := os.WriteFile(filepath.Join(stats, f), []byte(strconv.FormatUint(v, 10)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := readNetDev("tap-web")
	if err != nil {
		t.Fatal(err)
	}
	// The guest receives what the host's end sends.
	want := netStat{rxBytes: 5, rxPackets: 6, rxErrors: 7, rxDrops: 8, txBytes: 1, txPackets: 2, txErrors: 3, txDrops: 4}
	if n != want {
		t.Errorf("got %+v, want %+v", n, want)
	}
	for _, bad := range []string{"", ".", "..", "../etc", "a/b", "none"} {
		if _, err := readNetDev(bad); err == nil {
			t.Errorf("readNetDev(%q): no error", bad)
		}
	}
	// The real loopback device parses.
	sysClassNet = old
	if _, err := readNetDev("lo"); err != nil {
		t.Errorf("lo: %v", err)
	}
}
