package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/cloudinit"
	"github.com/vmstated/vmstated/hypervisor"
)

func TestCloudInitArgs(t *testing.T) {
	spec := hypervisor.Spec{Name: "web", RunDir: "/run/vmstated/web", Options: &Options{
		Accel: "tcg", CDROM: "/iso/install.iso", CloudInit: &cloudinit.Config{Hostname: "web"},
	}}
	_, args, err := CommandLine(spec)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-drive file=/run/vmstated/web/cidata.iso,if=none,id=cidata,media=cdrom,readonly=on,format=raw -device ide-cd,drive=cidata,bus=ide.1",
		"-device ide-cd,drive=cdrom0,bus=ide.0",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("command line lacks %q:\n%s", want, line)
		}
	}
	spec.Options.(*Options).CloudInit = nil
	if _, args, _ := CommandLine(spec); strings.Contains(strings.Join(args, " "), "cidata") {
		t.Error("a seed drive without cloud_init")
	}
}

// A real QEMU gets the seed built in its run directory and attached as a
// read-only CD; a restart after an edit sees the new seed; a seed that
// cannot be built launches nothing.
func TestCloudInitSeedAttached(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	ud := filepath.Join(dir, "user-data")
	os.WriteFile(ud, []byte("#cloud-config\nruncmd: [ [ echo, one ] ]\n"), 0o644)
	spec := diskless(t, &Options{CloudInit: &cloudinit.Config{UserData: ud, Hostname: "seeded"}})
	seed := filepath.Join(spec.RunDir, "cidata.iso")

	inst := start(t, &Driver{}, spec)
	var blocks []struct {
		Device   string `json:"device"`
		QDev     string `json:"qdev"`
		Inserted *struct {
			File string `json:"file"`
			RO   bool   `json:"ro"`
		} `json:"inserted"`
	}
	if err := inst.(*instance).command(testCtx(t), "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range blocks {
		if b.Device == "cidata" && b.Inserted != nil && b.Inserted.File == seed && b.Inserted.RO {
			found = true
		}
	}
	if !found {
		t.Errorf("no read-only cidata drive with %s: %+v", seed, blocks)
	}
	files, err := cloudinit.ReadISO(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(files["user-data"]), "echo, one") || !strings.Contains(string(files["meta-data"]), `local-hostname: "seeded"`) {
		t.Errorf("seed files: %q", files)
	}
	if fi, _ := os.Stat(seed); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("seed mode %v: user-data may hold secrets", fi.Mode())
	}
	inst.Kill()
	waitExit(t, inst)

	os.WriteFile(ud, []byte("#cloud-config\nruncmd: [ [ echo, two ] ]\n"), 0o644)
	inst = start(t, &Driver{}, spec)
	files, _ = cloudinit.ReadISO(seed)
	if !strings.Contains(string(files["user-data"]), "echo, two") {
		t.Errorf("the seed was not rebuilt after the edit: %q", files["user-data"])
	}
	inst.Kill()
	waitExit(t, inst)

	os.Remove(ud)
	if inst, err := (&Driver{}).Start(testCtx(t), spec); err == nil {
		inst.Kill()
		t.Fatal("started without its user_data file")
	} else if !strings.Contains(err.Error(), "cloud_init.user_data") {
		t.Errorf("error %v, want one naming cloud_init.user_data", err)
	}
	if _, err := os.Stat(filepath.Join(spec.RunDir, pidFile)); err == nil {
		t.Error("a QEMU was launched for a seed that could not be built")
	}
}
