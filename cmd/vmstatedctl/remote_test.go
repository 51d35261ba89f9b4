package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// How -H, -s and VMSTATED_HOST combine, and what is refused before any
// ssh runs. VMSTATED_SSH_COMMAND names a program that fails at once with
// ssh's status, so a command that does try ssh shows it.
func TestRemoteFlags(t *testing.T) {
	dir := t.TempDir()
	fakeSSH := filepath.Join(dir, "ssh")
	if err := os.WriteFile(fakeSSH, []byte("#!/bin/sh\necho \"fake ssh: $*\" >&2\nexit 255\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMSTATED_SSH_COMMAND", fakeSSH)
	tests := []struct {
		name string
		env  string // VMSTATED_HOST
		args []string
		code int
		want string
	}{
		{"ssh fails", "", []string{"-H", "ssh://ann@hv1:2222/run/v.sock", "status"}, exitSSH, "fake ssh: -T -p 2222 -- ann@hv1 'vmstatedctl' dial-stdio -s '/run/v.sock'"},
		{"from the environment", "ssh://hv2", []string{"status"}, exitSSH, "-- hv2 'vmstatedctl' dial-stdio"},
		{"-s wins over the environment", "ssh://hv2", []string{"-s", filepath.Join(dir, "none.sock"), "status"}, exitUnreachable, "cannot reach vmstated"},
		{"-s and -H", "", []string{"-s", "/x.sock", "-H", "ssh://hv1", "status"}, exitUsage, "do not go together"},
		{"not ssh", "", []string{"-H", "tcp://hv1:22", "status"}, exitUsage, "only ssh://"},
		{"option as host", "", []string{"-H", "ssh://-oProxyCommand=x", "status"}, exitUsage, "may not begin with '-'"},
		{"bad environment", "hv1", []string{"status"}, exitUsage, "VMSTATED_HOST"},
		{"two hosts for one VM", "", []string{"-H", "ssh://a", "-H", "ssh://b", "start", "web"}, exitUsage, "several hosts"},
		{"two hosts for one VM's status", "", []string{"-H", "ssh://a", "-H", "ssh://b", "status", "web"}, exitUsage, "several hosts"},
		{"two hosts, stop one VM", "", []string{"-H", "ssh://a", "-H", "ssh://b", "stop", "web"}, exitUsage, "several hosts"},
		{"check is local", "", []string{"-H", "ssh://a", "check"}, exitUsage, "this host only"},
		{"dial-stdio ignores the environment", "ssh://hv2", []string{"dial-stdio", "-s", filepath.Join(dir, "none.sock")}, exitUnreachable, "no daemon answers at"},
		{"two hosts, both tried", "", []string{"-H", "ssh://a", "-H", "ssh://b", "status"}, exitSSH, "ssh://b"},
		{"command-level -H", "", []string{"status", "-H", "ssh://c"}, exitSSH, "-- c 'vmstatedctl'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VMSTATED_HOST", tt.env)
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), tt.code, tt.want)
			}
		})
	}
}

func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	p := &prefixWriter{w: &b, prefix: "h1 "}
	p.Write([]byte("one\ntw"))
	p.Write([]byte("o\nthree\n"))
	if got := b.String(); got != "h1 one\nh1 two\nh1 three\n" {
		t.Errorf("got %q", got)
	}
}

// With several hosts, each host's error has its own line naming it (with
// -o json, a "host" field).
func TestRemoteErrorsPerHost(t *testing.T) {
	dir := t.TempDir()
	fakeSSH := filepath.Join(dir, "ssh")
	if err := os.WriteFile(fakeSSH, []byte("#!/bin/sh\necho 'Permission denied (publickey).' >&2\nexit 255\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMSTATED_SSH_COMMAND", fakeSSH)
	t.Setenv("VMSTATED_HOST", "")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-H", "ssh://a", "-H", "ssh://b", "status"}, &out, &errb)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if code != exitSSH || len(lines) != 2 || !strings.HasPrefix(lines[0], "ssh://a: vmstatedctl: ssh to ssh://a failed") || !strings.HasPrefix(lines[1], "ssh://b: ") {
		t.Errorf("exit %d, stderr:\n%s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code = run(context.Background(), []string{"-o", "json", "-H", "ssh://a", "-H", "ssh://b", "status"}, &out, &errb)
	dec := json.NewDecoder(&errb)
	for _, host := range []string{"ssh://a", "ssh://b"} {
		var e struct{ Error, Code, Host string }
		if err := dec.Decode(&e); err != nil || e.Host != host || e.Code != "ssh" || !strings.Contains(e.Error, "Permission denied") {
			t.Errorf("JSON error for %s: %+v, %v", host, e, err)
		}
	}
	if code != exitSSH || out.String() != "[]\n" {
		t.Errorf("-o json: exit %d, stdout %q", code, out.String())
	}
}
