package diskimage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "4.5G", want: 4608 * MB},
		{in: "10G", want: 10240 * MB},
		{in: "512M", want: 512 * MB},
		{in: "512MB", want: 512 * MB},
		{in: "1GiB", want: 1024 * MB},
		{in: "1k", want: MB},          // rounded up
		{in: "1048577", want: 2 * MB}, // bytes, rounded up
		{in: "1T", want: 1 << 40},
		{in: "0", bad: true},
		{in: "-1G", bad: true},
		{in: "", bad: true},
		{in: "G", bad: true},
		{in: "1e3", bad: true},
		{in: "ten", bad: true},
		{in: "NaN", bad: true},
	} {
		got, err := ParseSize(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func needQemuImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (Debian: qemu-utils)")
	}
	return p
}

func info(t *testing.T, path string) Info {
	t.Helper()
	i, err := Inspect(context.Background(), "", path)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestCreateEmpty(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, c := range []struct {
		format string
		size   string
	}{{"raw", "4.5G"}, {"qcow2", "100M"}, {"", "1k"}} {
		p := filepath.Join(dir, "disk-"+c.format+c.size)
		size, err := ParseSize(c.size)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Create(ctx, Request{Path: p, Format: c.format, Size: size})
		if err != nil {
			t.Fatalf("%s %s: %v", c.format, c.size, err)
		}
		want := c.format
		if want == "" {
			want = Raw
		}
		got := info(t, p)
		if got.Format != want || got.VirtualSize != size || res.Size != size || res.Format != want {
			t.Errorf("%s %s: qemu-img says %+v, Create says %+v; want %s of %d bytes", c.format, c.size, got, res, want, size)
		}
	}
	// The raw image is sparse: it takes (almost) no blocks.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "disk-raw4.5G"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > MB {
		t.Errorf("raw image uses %d bytes on disk, want a sparse file", st.Blocks*512)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestCreateRawWithoutQemuImg(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.img")
	res, err := Create(context.Background(), Request{Path: p, Size: 64 * MB, QemuImg: filepath.Join(dir, "no-such-qemu-img")})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 64*MB || res.Format != Raw {
		t.Fatalf("got %v %v, want a 64M raw file", fi, err)
	}
	_, err = Create(context.Background(), Request{Path: filepath.Join(dir, "q"), Format: QCOW2, Size: MB, QemuImg: filepath.Join(dir, "no-such-qemu-img")})
	if err == nil || !strings.Contains(err.Error(), "qemu-utils") {
		t.Fatalf("qcow2 without qemu-img: %v, want an error naming the package to install", err)
	}
}

func TestCreateBase(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	ctx := context.Background()
	base := filepath.Join(dir, "base.qcow2")
	if _, err := Create(ctx, Request{Path: base, Format: QCOW2, Size: 200 * MB}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(base)

	// Same size as the base when -s is left out.
	over := filepath.Join(dir, "over.qcow2")
	if _, err := Create(ctx, Request{Path: over, Base: base}); err != nil {
		t.Fatal(err)
	}
	got := info(t, over)
	if got.Format != QCOW2 || got.VirtualSize != 200*MB || got.BackingFilename != base || got.BackingFormat != QCOW2 {
		t.Errorf("over base: %+v, want qcow2 of 200M backed by %s (qcow2)", got, base)
	}
	// Larger than the base; a raw base works too, and a relative base
	// is taken from the working directory.
	rawBase := filepath.Join(dir, "base.raw")
	if _, err := Create(ctx, Request{Path: rawBase, Size: 10 * MB}); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	big := filepath.Join(dir, "big.qcow2")
	if _, err := Create(ctx, Request{Path: big, Base: "base.raw", Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if got := info(t, big); got.VirtualSize != 1<<30 || got.BackingFilename != rawBase || got.BackingFormat != Raw {
		t.Errorf("bigger over raw base: %+v", got)
	}
	if after, _ := os.ReadFile(base); string(after) != string(before) {
		t.Error("the base image was modified")
	}

	_, err := Create(ctx, Request{Path: filepath.Join(dir, "small.qcow2"), Base: base, Size: 100 * MB})
	if err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("smaller than base: %v, want a refusal", err)
	}
	_, err = Create(ctx, Request{Path: filepath.Join(dir, "r.img"), Base: base, Format: Raw})
	if err == nil || !strings.Contains(err.Error(), "qcow2") {
		t.Errorf("raw over base: %v, want a refusal", err)
	}
	_, err = Create(ctx, Request{Path: filepath.Join(dir, "x.img"), Base: base, Input: base})
	if err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Errorf("-b and -i: %v, want a refusal", err)
	}
	for _, p := range []string{"small.qcow2", "r.img", "x.img"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was created by a refused request", p)
		}
	}
}

func TestCreateInput(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	ctx := context.Background()
	in := filepath.Join(dir, "in.raw")
	if _, err := Create(ctx, Request{Path: in, Size: 8 * MB}); err != nil {
		t.Fatal(err)
	}
	// A recognisable byte pattern survives the conversion.
	f, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("vmstated-copy"), 3*MB)
	f.Close()

	cp := filepath.Join(dir, "copy.qcow2")
	if _, err := Create(ctx, Request{Path: cp, Format: QCOW2, Input: in, Size: 32 * MB}); err != nil {
		t.Fatal(err)
	}
	got := info(t, cp)
	if got.Format != QCOW2 || got.VirtualSize != 32*MB || got.BackingFilename != "" {
		t.Errorf("copy: %+v, want qcow2 of 32M without a backing file", got)
	}
	back := filepath.Join(dir, "back.raw")
	if _, err := Create(ctx, Request{Path: back, Input: cp}); err != nil {
		t.Fatal(err)
	}
	if got := info(t, back); got.Format != Raw || got.VirtualSize != 32*MB {
		t.Errorf("copy back: %+v", got)
	}
	buf := make([]byte, 13)
	f, _ = os.Open(back)
	f.ReadAt(buf, 3*MB)
	f.Close()
	if string(buf) != "vmstated-copy" {
		t.Errorf("copied data: %q", buf)
	}
	_, err = Create(ctx, Request{Path: filepath.Join(dir, "small"), Input: in, Size: 4 * MB})
	if err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("smaller than input: %v", err)
	}
	_, err = Create(ctx, Request{Path: filepath.Join(dir, "none"), Input: filepath.Join(dir, "missing")})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing input: %v", err)
	}
}

func TestNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "taken")
	if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{Raw, QCOW2} {
		_, err := Create(context.Background(), Request{Path: p, Format: f, Size: MB})
		if !errors.Is(err, ErrExists) {
			t.Errorf("%s over an existing file: %v, want ErrExists", f, err)
		}
	}
	// A dangling symlink is a path that exists too.
	l := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "nowhere"), l)
	if _, err := Create(context.Background(), Request{Path: l, Size: MB}); !errors.Is(err, ErrExists) {
		t.Errorf("over a dangling symlink: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "precious" {
		t.Errorf("file changed to %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("created the symlink's target")
	}
	if _, err := Create(context.Background(), Request{Path: filepath.Join(dir, "no", "dir"), Size: MB}); err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := Create(context.Background(), Request{Path: filepath.Join(dir, "nosize")}); err == nil || !strings.Contains(err.Error(), "-s") {
		t.Errorf("no size: %v", err)
	}
}
