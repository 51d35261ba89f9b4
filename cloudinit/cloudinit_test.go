package cloudinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildGenerated(t *testing.T) {
	s, err := Build("web", Config{Hostname: "web-1", SSHAuthorizedKeys: []string{`ssh-ed25519 AAAA "quoted" user@host`}})
	if err != nil {
		t.Fatal(err)
	}
	ud := string(s.Files[UserData])
	if ud != "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA \\\"quoted\\\" user@host\"\n" {
		t.Errorf("user-data:\n%s", ud)
	}
	md := string(s.Files[MetaData])
	if !strings.HasPrefix(s.InstanceID, "web-") || md != "instance-id: \""+s.InstanceID+"\"\nlocal-hostname: \"web-1\"\n" {
		t.Errorf("meta-data:\n%s", md)
	}
	if _, ok := s.Files[NetworkConfig]; ok {
		t.Error("network-config on a seed that was given none")
	}
	// Stable for the same inputs, new for changed ones.
	again, _ := Build("web", Config{Hostname: "web-1", SSHAuthorizedKeys: []string{`ssh-ed25519 AAAA "quoted" user@host`}})
	other, _ := Build("web", Config{Hostname: "web-2", SSHAuthorizedKeys: []string{`ssh-ed25519 AAAA "quoted" user@host`}})
	if again.InstanceID != s.InstanceID || other.InstanceID == s.InstanceID {
		t.Errorf("instance ids: %s, again %s, changed %s", s.InstanceID, again.InstanceID, other.InstanceID)
	}
	// The VM's name is the host name by default, when it is one.
	if s, _ := Build("db", Config{}); !strings.Contains(string(s.Files[MetaData]), `local-hostname: "db"`) {
		t.Errorf("default host name: %s", s.Files[MetaData])
	}
	if s, _ := Build("db_1", Config{}); strings.Contains(string(s.Files[MetaData]), "local-hostname") {
		t.Errorf("db_1 is no host name: %s", s.Files[MetaData])
	}
}

func TestBuildFiles(t *testing.T) {
	dir := t.TempDir()
	ud := write(t, dir, "ud", "#cloud-config\npackages: [nginx]\n")
	nc := write(t, dir, "nc", "version: 2\n")
	md := write(t, dir, "md", "local-hostname: mine\n")
	s, err := Build("web", Config{UserData: ud, NetworkConfig: nc, MetaData: md})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Files[UserData]) != "#cloud-config\npackages: [nginx]\n" || string(s.Files[NetworkConfig]) != "version: 2\n" {
		t.Errorf("files not taken as they are: %q", s.Files)
	}
	if string(s.Files[MetaData]) != "instance-id: \""+s.InstanceID+"\"\nlocal-hostname: mine\n" {
		t.Errorf("meta-data: %q", s.Files[MetaData])
	}
	// The user's own instance-id is kept.
	write(t, dir, "md", "instance-id: fixed-1\nlocal-hostname: mine\n")
	s, _ = Build("web", Config{MetaData: md})
	if s.InstanceID != "fixed-1" || string(s.Files[MetaData]) != "instance-id: fixed-1\nlocal-hostname: mine\n" {
		t.Errorf("own instance-id: %s %q", s.InstanceID, s.Files[MetaData])
	}
	if _, err := Build("web", Config{UserData: filepath.Join(dir, "gone")}); err == nil || !strings.Contains(err.Error(), "cloud_init.user_data") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("x"), MaxFileSize+1), 0o644)
	if _, err := Build("web", Config{UserData: big}); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized file: %v", err)
	}
}

// The image as others read it: the package's reader, blkid (label and
// type) and isoinfo (names and contents), where installed.
func TestEnsureImage(t *testing.T) {
	dir := t.TempDir()
	ud := write(t, dir, "ud", "#cloud-config\nruncmd: [ [ echo, hi ] ]\n")
	nc := write(t, dir, "nc", "version: 2\nethernets: {}\n")
	cfg := Config{UserData: ud, NetworkConfig: nc, Hostname: "web"}
	s, err := Build("web", cfg)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "cidata.iso")
	if rebuilt, err := Ensure(img, s); err != nil || !rebuilt {
		t.Fatalf("first Ensure: %v %v", rebuilt, err)
	}
	got, err := ReadISO(img)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n, b := range got {
		names = append(names, n)
		if !bytes.Equal(b, s.Files[n]) {
			t.Errorf("%s on the image: %q, want %q", n, b, s.Files[n])
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "meta-data network-config user-data" {
		t.Errorf("files on the image: %v", names)
	}
	if l, err := Label(img); err != nil || l != VolumeID {
		t.Errorf("label %q %v", l, err)
	}
	if blkid, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command(blkid, "-p", "-o", "export", img).Output()
		if err != nil || !strings.Contains(string(out), "LABEL=cidata\n") || !strings.Contains(string(out), "TYPE=iso9660\n") {
			t.Errorf("blkid: %v\n%s", err, out)
		}
	}
	if isoinfo, err := exec.LookPath("isoinfo"); err == nil {
		out, err := exec.Command(isoinfo, "-f", "-i", img).Output()
		if err != nil || !strings.Contains(string(out), "/user-data;1") || !strings.Contains(string(out), "/meta-data;1") {
			t.Errorf("isoinfo -f: %v\n%s", err, out)
		}
		out, err = exec.Command(isoinfo, "-i", img, "-x", "/user-data;1").Output()
		if err != nil || string(out) != string(s.Files[UserData]) {
			t.Errorf("isoinfo -x user-data: %v %q", err, out)
		}
	} else {
		t.Log("isoinfo not installed (genisoimage); checked with the Go reader and blkid only")
	}

	// Unchanged inputs keep the image as it is.
	fi1, _ := os.Stat(img)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(img, old, old)
	s2, _ := Build("web", cfg)
	if rebuilt, err := Ensure(img, s2); err != nil || rebuilt {
		t.Errorf("Ensure with unchanged inputs: rebuilt %v, %v", rebuilt, err)
	}
	if fi2, _ := os.Stat(img); !fi2.ModTime().Equal(old) || fi2.Size() != fi1.Size() {
		t.Error("the unchanged image was rewritten")
	}
	// An edited input is a new image and a new instance.
	write(t, dir, "ud", "#cloud-config\nruncmd: [ [ echo, changed ] ]\n")
	s3, _ := Build("web", cfg)
	if rebuilt, err := Ensure(img, s3); err != nil || !rebuilt {
		t.Fatalf("Ensure after an edit: %v %v", rebuilt, err)
	}
	got, _ = ReadISO(img)
	if !strings.Contains(string(got[UserData]), "changed") || s3.InstanceID == s.InstanceID || !strings.Contains(string(got[MetaData]), s3.InstanceID) {
		t.Errorf("after the edit: %q (instance %s, was %s)", got, s3.InstanceID, s.InstanceID)
	}
	// A damaged image is replaced.
	os.WriteFile(img, []byte("junk"), 0o600)
	if rebuilt, err := Ensure(img, s3); err != nil || !rebuilt {
		t.Errorf("Ensure over junk: %v %v", rebuilt, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
