package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bhyveRoot writes a config root with one valid bhyve VM, whose bhyve
// binary is nowhere.
func bhyveRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "bsdvm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bhyve_config")
	text := "bsdvm { hypervisor = bhyve; configfile = " + conf + "; bhyve { binary = " + filepath.Join(root, "none") + "; } }\n"
	if err := os.WriteFile(conf, []byte("memory.size=1G\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// vmstated -n accepts a bhyve VM off FreeBSD (the config is valid) but
// warns that it cannot run on this host.
func TestCheckWarnsOfBhyveOffFreeBSD(t *testing.T) {
	if runtime.GOOS == "freebsd" {
		t.Skip("bhyve runs here")
	}
	var out, errb bytes.Buffer
	code := realMain([]string{"-n", "-c", bhyveRoot(t)}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, want 0 (a warning only)\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "warning: bhyve runs only on FreeBSD") || !strings.Contains(errb.String(), "bsdvm cannot start here") {
		t.Fatalf("no warning about bhyve on %s:\n%s", runtime.GOOS, errb.String())
	}
	if !strings.Contains(out.String(), "configuration ok") {
		t.Fatalf("stdout: %s", out.String())
	}
}
