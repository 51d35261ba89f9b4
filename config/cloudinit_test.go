package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeVMConfig(t *testing.T, text string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ci")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCloudInitSection(t *testing.T) {
	dir := writeVMConfig(t, `ci {
    hypervisor = qemu;
    cloud_init {
        user_data = user-data.yaml;
        network_config = /dev/null/nothing;
    }
}
`)
	// A missing file is an error at its position.
	_, diags := LoadDir(dir, LoadOptions{})
	found := false
	for _, d := range diags.Errors() {
		s := d.String()
		if strings.Contains(s, "cloud_init.user_data") && strings.Contains(s, filepath.Join(dir, "config")+":4:21") && strings.Contains(s, "user-data.yaml") {
			found = true
		}
	}
	if !found {
		t.Errorf("no file:line:col error for the missing user_data file: %v", diags)
	}

	os.WriteFile(filepath.Join(dir, "user-data.yaml"), []byte("#cloud-config\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "config"), []byte(`ci {
    hypervisor = qemu;
    cloud_init {
        user_data = user-data.yaml;
        meta_data = /dev/null;
    }
}
`), 0o644)
	if _, diags := LoadDir(dir, LoadOptions{}); !diags.HasErrors() || !strings.Contains(diagText(diags), "not a regular file") {
		t.Errorf("meta_data = /dev/null: %v, want an error", diags)
	}

	os.WriteFile(filepath.Join(dir, "config"), []byte(`ci {
    hypervisor = qemu;
    cloud_init {
        user_data = user-data.yaml;
        hostname = web-1.example;
    }
}
`), 0o644)
	vm, diags := LoadDir(dir, LoadOptions{})
	if vm == nil || diags.HasErrors() {
		t.Fatal(diags)
	}
	if vm.CloudInit == nil || vm.CloudInit.UserData != filepath.Join(dir, "user-data.yaml") || vm.CloudInit.Hostname != "web-1.example" {
		t.Errorf("cloud_init: %+v", vm.CloudInit)
	}

	for _, c := range []struct{ body, want string }{
		{`hostname = "-bad";`, "not a host name"},
		{`hostname = "a_b";`, "not a host name"},
		{`ssh_authorized_keys = [ "" ];`, "one non-empty line"},
		{`ssh_authorized_keys = "a\nb";`, "one non-empty line"},
		{`user_data = user-data.yaml; ssh_authorized_keys = "ssh-ed25519 AAAA";`, "no effect next to user_data"},
		{`meta_data = user-data.yaml; hostname = web;`, "no effect next to meta_data"},
		{`userdata = x;`, "unknown"},
	} {
		os.WriteFile(filepath.Join(dir, "config"), []byte("ci {\n hypervisor = qemu;\n cloud_init { "+c.body+" }\n}\n"), 0o644)
		_, diags := LoadDir(dir, LoadOptions{})
		if !strings.Contains(strings.ToLower(diagText(diags)), c.want) {
			t.Errorf("%s: %v, want %q", c.body, diags, c.want)
		}
	}

	// Other hypervisors: checked, then ignored with a warning.
	os.WriteFile(filepath.Join(dir, "config"), []byte("ci {\n hypervisor = exec;\n exec { command = [ \"/bin/true\" ]; }\n cloud_init { hostname = web; }\n}\n"), 0o644)
	vm, diags = LoadDir(dir, LoadOptions{})
	if vm == nil || !strings.Contains(diagText(diags), "only hypervisor qemu") {
		t.Errorf("exec with cloud_init: %v", diags)
	}
}

func diagText(ds Diagnostics) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String() + "\n")
	}
	return b.String()
}
