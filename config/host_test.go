package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostDiagnosticsBhyveOffFreeBSD(t *testing.T) {
	root := t.TempDir()
	standin := filepath.Join(t.TempDir(), "bhyve")
	if err := os.WriteFile(standin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bhyveConf := filepath.Join(t.TempDir(), "bhyve_config")
	if err := os.WriteFile(bhyveConf, []byte("memory.size=1G\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vms := map[string]string{
		"bsdvm": "hypervisor = bhyve;\nconfigfile = " + bhyveConf + ";\nbhyve { binary = " + filepath.Join(root, "no-such-bhyve") + "; }\n",
		"fake":  "hypervisor = bhyve;\nconfigfile = " + bhyveConf + ";\nbhyve { binary = " + standin + "; }\n",
		"lab":   "hypervisor = exec;\nexec { command = [\"/bin/true\"]; }\n",
	}
	for name, text := range vms {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, "config"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snap := LoadRoot(root, LoadOptions{})
	if err := snap.Err(); err != nil {
		t.Fatal(err)
	}
	// Loading itself says nothing of the host.
	for _, d := range snap.Diagnostics() {
		if strings.Contains(d.Msg, "FreeBSD") {
			t.Fatalf("loading warned of the host: %s", d)
		}
	}
	got := HostDiagnostics(snap, "linux")
	if len(got) != 1 {
		t.Fatalf("on linux: %v, want one warning, for bsdvm", got)
	}
	d := got[0]
	if d.Severity != Warning || d.Key != "hypervisor" || d.Pos.Line != 1 || !strings.HasSuffix(d.Pos.File, filepath.Join("bsdvm", "config")) ||
		!strings.Contains(d.Msg, "only on FreeBSD") || !strings.Contains(d.Msg, "linux") {
		t.Fatalf("warning %q at %+v", d.String(), d.Pos)
	}
	if got := HostDiagnostics(snap, "freebsd"); len(got) != 0 {
		t.Fatalf("on freebsd: %v", got)
	}
}
