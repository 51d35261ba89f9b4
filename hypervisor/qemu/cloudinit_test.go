package qemu

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/cloudinit"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/internal/testguest"
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

// seedInit mounts the first CD drive, the seed, and prints what a
// cloud-init would read from it, then powers off.
const seedInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in %s; do insmod /lib/$m.ko; done
i=0
while [ ! -e /dev/sr0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /seed
mount -t iso9660 -o ro /dev/sr0 /seed
echo "SEED-LABEL $(dd if=/dev/sr0 bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null)"
echo "SEED-FILES $(ls /seed | tr '\n' ' ')"
echo "SEED-HOSTNAME $(sed -n 's/^local-hostname: *//p' /seed/meta-data)"
echo "SEED-INSTANCE $(sed -n 's/^instance-id: *//p' /seed/meta-data)"
echo SEED-DONE
poweroff -f
`

// The busybox guest finds the seed on its CD drive, labelled cidata, and
// reads meta-data's host name from it, as cloud-init would.
func TestCloudInitGuestReadsSeed(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("boots a Linux guest; skipped with -short")
	}
	kernel, initrd := testguest.Custom(t, fmt.Sprintf(seedInit, strings.Join(testguest.CDModules, " ")), testguest.CDModules...)

	spec := hypervisor.Spec{
		Name: "seeded", RunDir: runDir(t), MemoryMB: 128, CPUs: 1,
		Options: &Options{Accel: "tcg", Serial: true,
			CloudInit: &cloudinit.Config{Hostname: "seed-host-1"},
			ExtraArgs: []string{"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet"}},
	}
	inst := start(t, &Driver{}, spec)
	conn, err := net.Dial("unix", inst.Handle().Sockets["serial"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
	got := map[string]string{}
	var console []string
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		console = append(console, line)
		if k, v, ok := strings.Cut(line, " "); ok && strings.HasPrefix(k, "SEED-") {
			got[k] = v
		}
		if line == "SEED-DONE" {
			break
		}
	}
	if _, ok := got["SEED-FILES"]; !ok {
		t.Fatalf("the guest printed no seed report (%v); console:\n%s", sc.Err(), strings.Join(console, "\n"))
	}
	seed, _ := cloudinit.Build("seeded", cloudinit.Config{Hostname: "seed-host-1"})
	if got["SEED-HOSTNAME"] != `"seed-host-1"` || got["SEED-INSTANCE"] != `"`+seed.InstanceID+`"` {
		t.Errorf("meta-data as the guest read it: host %s, instance %s; want seed-host-1, %s", got["SEED-HOSTNAME"], got["SEED-INSTANCE"], seed.InstanceID)
	}
	if got["SEED-FILES"] != "meta-data user-data" {
		t.Errorf("files the guest sees: %q", got["SEED-FILES"])
	}
	// The volume identifier, read raw from the primary volume
	// descriptor (sector 16, bytes 40 to 71, space-padded).
	if got["SEED-LABEL"] != cloudinit.VolumeID {
		t.Errorf("volume identifier in the guest: %q, want %q", got["SEED-LABEL"], cloudinit.VolumeID)
	}
	if e := waitExit(t, inst); e.Reason != hypervisor.ExitPoweroff {
		t.Errorf("exit %+v, want the guest's poweroff", e)
	}
}
