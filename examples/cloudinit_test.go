package examples

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/cloudinit"
	"github.com/vmstated/vmstated/config"
)

// The cloud-init example loads without a word and its seed builds: the
// user-data as written, meta-data with the host name and an instance-id.
func TestQEMUCloudInitConfig(t *testing.T) {
	vm, diags := config.LoadDir("qemu-cloud-init", config.LoadOptions{})
	noDiagnostics(t, "qemu-cloud-init", diags)
	if vm == nil {
		t.FailNow()
	}
	ci := vm.CloudInit
	abs, _ := filepath.Abs(filepath.Join("qemu-cloud-init", "user-data.yaml"))
	if ci == nil || ci.UserData != abs || ci.Hostname != "web" {
		t.Fatalf("cloud_init = %+v", ci)
	}
	seed, err := cloudinit.Build(vm.Name, cloudinit.Config{UserData: ci.UserData, Hostname: ci.Hostname})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(seed.Files[cloudinit.UserData]), "#cloud-config\n") ||
		!strings.Contains(string(seed.Files[cloudinit.MetaData]), "local-hostname: \"web\"\n") ||
		!strings.HasPrefix(seed.InstanceID, "web-") {
		t.Errorf("seed: %q", seed.Files)
	}
}
