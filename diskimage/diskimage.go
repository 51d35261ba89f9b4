// Package diskimage creates VM disk images the way OpenBSD's vmctl create
// does: an empty image of a size, a qcow2 image over an unmodified base
// image (-b), or a copy of an image converted to another format (-i).
//
// The contract: an existing path is never overwritten (the image is
// written under a temporary name in the same directory and linked into
// place, which fails if the path appeared meanwhile); a requested size
// smaller than the input is refused rather than shrinking anything;
// sizes are whole megabytes. qcow2 images, bases and copies go through
// qemu-img; an empty raw image needs no tool (a sparse file).
package diskimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// MB is the unit sizes are rounded up to.
const MB = 1 << 20

// Formats.
const (
	Raw   = "raw"
	QCOW2 = "qcow2"
)

// ErrExists is returned when the image's path already exists.
var ErrExists = errors.New("already exists")

// Request says what image to create.
type Request struct {
	// Path is the image to create; it must not exist.
	Path string
	// Format is Raw or QCOW2; empty means raw, or qcow2 with a Base.
	Format string
	// Size in bytes, a multiple of MB (see ParseSize); 0 takes the size
	// of Base or Input, and is an error without either.
	Size int64
	// Base, when set, makes a qcow2 image that records only the changes
	// to this image, which it never writes.
	Base string
	// Input, when set, is copied into the new image and converted to
	// Format.
	Input string
	// QemuImg is the qemu-img program; empty looks it up in PATH.
	QemuImg string
}

// Result tells what was created.
type Result struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	Size   int64  `json:"size"` // virtual size in bytes
	Base   string `json:"base,omitempty"`
	Input  string `json:"input,omitempty"`
}

// ParseSize reads a size: a number of bytes with an optional K, M, G, T or
// P suffix (powers of 1024, "B" or "iB" may follow; fractions such as 4.5G
// are accepted), rounded up to whole megabytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "IB")
	u = strings.TrimSuffix(u, "B")
	mult := 1.0
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGTP", u[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || u == "" || math.IsNaN(v) || math.IsInf(v, 0) || strings.ContainsAny(u, "eEpPxX") {
		return 0, fmt.Errorf("size %q: write a number of bytes with an optional K, M, G or T suffix, such as 512M or 4.5G", s)
	}
	b := v * mult
	if b <= 0 {
		return 0, fmt.Errorf("size %q: must be more than zero", s)
	}
	if b > 1<<62 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(math.Ceil(b/MB)) * MB, nil
}

// Create makes the image req describes and reports what it made.
func Create(ctx context.Context, req Request) (Result, error) {
	if req.Path == "" {
		return Result{}, errors.New("no image path given")
	}
	if req.Base != "" && req.Input != "" {
		return Result{}, errors.New("-b (a base image) and -i (an image to copy) exclude each other; give one")
	}
	format := req.Format
	if format == "" {
		format = Raw
		if req.Base != "" {
			format = QCOW2
		}
	}
	if format != Raw && format != QCOW2 {
		return Result{}, fmt.Errorf("format %q: want raw or qcow2", req.Format)
	}
	if req.Base != "" && format != QCOW2 {
		return Result{}, errors.New("an image over a base image (-b) is always qcow2; leave out -f raw")
	}
	if req.Size < 0 || req.Size%MB != 0 {
		return Result{}, fmt.Errorf("size %d is not a whole number of megabytes", req.Size)
	}
	if _, err := os.Lstat(req.Path); err == nil {
		return Result{}, fmt.Errorf("%s %w; it is never overwritten: remove it first or name another path", req.Path, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return Result{}, fmt.Errorf("%s: %w", req.Path, err)
	}
	if req.Size == 0 && req.Base == "" && req.Input == "" {
		return Result{}, errors.New("no size given: name one with -s (e.g. -s 10G), or a base (-b) or input (-i) image to take it from")
	}
	dir := filepath.Dir(req.Path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Result{}, fmt.Errorf("directory %s does not exist; create it first", dir)
	}

	// Both are taken as the caller meant them, relative to the working
	// directory; qemu would read a relative base against the new
	// image's directory instead.
	for _, p := range []*string{&req.Base, &req.Input} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return Result{}, err
			}
			*p = abs
		}
	}
	res := Result{Path: req.Path, Format: format, Size: req.Size, Base: req.Base, Input: req.Input}
	from := req.Base
	if from == "" {
		from = req.Input
	}
	var tool string
	if from != "" || format == QCOW2 {
		var err error
		if tool, err = qemuImg(req.QemuImg); err != nil {
			return Result{}, err
		}
	}
	var fromFormat string
	if from != "" {
		info, err := Inspect(ctx, tool, from)
		if err != nil {
			return Result{}, err
		}
		fromFormat = info.Format
		if res.Size == 0 {
			// Rounded up so that the new image holds all of the input.
			res.Size = (info.VirtualSize + MB - 1) / MB * MB
		} else if res.Size < info.VirtualSize {
			return Result{}, fmt.Errorf("size %s is smaller than %s (%s); an image is never shrunk: give at least %s or leave out -s",
				FormatSize(res.Size), from, FormatSize(info.VirtualSize), FormatSize((info.VirtualSize+MB-1)/MB*MB))
		}
	}

	tmp, err := tempName(req.Path)
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp)
	switch {
	case req.Base != "":
		// The base path is recorded in the image as given; qemu
		// resolves a relative one against the new image's directory.
		err = runTool(ctx, tool, "create", "-q", "-f", QCOW2, "-b", req.Base, "-F", fromFormat, "--", tmp, strconv.FormatInt(res.Size, 10))
	case req.Input != "":
		err = runTool(ctx, tool, "convert", "-q", "-f", fromFormat, "-O", format, "--", req.Input, tmp)
		if err == nil {
			var info Info
			if info, err = Inspect(ctx, tool, tmp); err == nil && info.VirtualSize < res.Size {
				err = runTool(ctx, tool, "resize", "-q", "-f", format, "--", tmp, strconv.FormatInt(res.Size, 10))
			}
		}
	case format == QCOW2:
		err = runTool(ctx, tool, "create", "-q", "-f", QCOW2, "--", tmp, strconv.FormatInt(res.Size, 10))
	default:
		err = sparseFile(tmp, res.Size)
	}
	if err != nil {
		return Result{}, err
	}
	// link fails if the path appeared since the check above: nothing
	// is ever replaced.
	if err := os.Link(tmp, req.Path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Result{}, fmt.Errorf("%s %w; it is never overwritten: remove it first or name another path", req.Path, ErrExists)
		}
		return Result{}, fmt.Errorf("creating %s: %w", req.Path, err)
	}
	return res, nil
}

// tempName reserves a file name next to path (so that link works and a
// relative base path means the same thing).
func tempName(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", path, err)
	}
	name := f.Name()
	f.Close()
	return name, nil
}

func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("sizing %s: %w", path, err)
	}
	return f.Close()
}

// Info is what qemu-img reports about an image.
type Info struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename,omitempty"`
	BackingFormat   string `json:"backing-filename-format,omitempty"`
}

// Inspect runs qemu-img info on path. tool empty looks qemu-img up in PATH.
func Inspect(ctx context.Context, tool, path string) (Info, error) {
	if tool == "" {
		var err error
		if tool, err = qemuImg(""); err != nil {
			return Info{}, err
		}
	}
	if _, err := os.Stat(path); err != nil {
		return Info{}, fmt.Errorf("image %s: %w", path, unwrap(err))
	}
	out, err := exec.CommandContext(ctx, tool, "info", "--output=json", "--", path).Output()
	if err != nil {
		return Info{}, fmt.Errorf("%s info %s: %w%s", tool, path, err, stderrOf(err))
	}
	var info Info
	if err := json.Unmarshal(out, &info); err != nil {
		return Info{}, fmt.Errorf("%s info %s: unreadable answer: %w", tool, path, err)
	}
	return info, nil
}

func qemuImg(name string) (string, error) {
	if name == "" {
		name = "qemu-img"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (%v): qcow2 images, base images and copies need it; install qemu-utils (Debian) or qemu (FreeBSD), or create an empty raw image", name, err)
	}
	return p, nil
}

func runTool(ctx context.Context, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return fmt.Errorf("%s %s: %s", filepath.Base(tool), args[0], msg)
		}
		return fmt.Errorf("%s %s: %w", filepath.Base(tool), args[0], err)
	}
	return nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// FormatSize prints a size in the largest unit that divides it.
func FormatSize(b int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", MB}} {
		if b >= u.n && b%u.n == 0 {
			return strconv.FormatInt(b/u.n, 10) + u.s
		}
	}
	if b >= MB {
		return strconv.FormatFloat(float64(b)/MB, 'f', 1, 64) + "M"
	}
	return strconv.FormatInt(b, 10) + " bytes"
}
