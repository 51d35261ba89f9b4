package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmstated/vmstated/trust"
	"github.com/vmstated/vmstated/ucl"
)

// The getters below read one value of a given type. Each reports its own
// error (naming the key and saying how to write the value) and returns
// ok = false, so a caller only decides what to store.

// text reads any scalar as text (for free-form keys such as description:
// `osversion = 13.2` is the number 13.2 to UCL but text to the user).
func (d *decoder) text(key string, n *ucl.Node) (string, bool) {
	s, ok := scalarText(n)
	if !ok {
		d.errf(n.Pos, key, "must be a single value, not %s", kindName(n.Kind))
	}
	return s, ok
}

// str reads a string; bare words such as `q35` are strings to UCL.
func (d *decoder) str(key string, n *ucl.Node) (string, bool) {
	if n.Kind != ucl.String {
		d.errf(n.Pos, key, "must be a string, not %s; quote it: %s = \"...\";", kindName(n.Kind), lastPart(key))
		return "", false
	}
	if strings.TrimSpace(n.Str) == "" {
		d.errf(n.Pos, key, "is empty; remove the line to get the default")
		return "", false
	}
	return n.Str, true
}

// path reads a file name; a relative one is relative to the VM's
// directory.
func (d *decoder) path(key string, n *ucl.Node) (string, bool) {
	s, ok := d.str(key, n)
	if !ok {
		return "", false
	}
	if strings.ContainsRune(s, 0) {
		d.errf(n.Pos, key, "contains a NUL byte")
		return "", false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(d.dir, s)
	}
	return filepath.Clean(s), true
}

// readableFile checks that path names a regular file the daemon can read.
func (d *decoder) readableFile(key string, n *ucl.Node, path string) bool {
	return d.openable(key, n, path, false)
}

// instructionFile checks a file the hypervisor reads as its configuration
// (configfile): readable, and under the trust rule when strict.
func (d *decoder) instructionFile(key string, n *ucl.Node, path string) bool {
	return d.openable(key, n, path, d.strict)
}

func (d *decoder) openable(key string, n *ucl.Node, path string, strict bool) bool {
	f, err := trust.Open(path, strict)
	switch {
	case err == nil:
		f.Close()
		return true
	case trust.IsNotExist(err):
		d.errf(n.Pos, key, "%s: %v; fix the path or create the file", path, unwrapPathError(err))
	case errors.Is(err, trust.ErrNotRegular):
		d.errf(n.Pos, key, "%s is not a regular file", path)
	case errors.Is(err, trust.ErrUntrusted):
		d.errf(n.Pos, key, "refused: %v", err)
	default:
		d.errf(n.Pos, key, "%s cannot be read: %v", path, unwrapPathError(err))
	}
	return false
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (d *decoder) boolean(key string, n *ucl.Node) (bool, bool) {
	switch n.Kind {
	case ucl.Bool:
		return n.Bool, true
	case ucl.String:
		if b, ok := parseBoolText(n.Str); ok {
			return b, true
		}
	}
	d.errf(n.Pos, key, "must be true or false (also yes/no, on/off), not %s", describe(n))
	return false, false
}

// integer reads a whole number in [lo, hi]. A quoted number is accepted.
func (d *decoder) integer(key string, n *ucl.Node, lo, hi int64) (int64, bool) {
	var v int64
	switch n.Kind {
	case ucl.Int:
		v = n.Int
	case ucl.Float:
		if n.Float != math.Trunc(n.Float) || math.Abs(n.Float) > 1e15 {
			d.errf(n.Pos, key, "must be a whole number, not %s", describe(n))
			return 0, false
		}
		v = int64(n.Float)
	case ucl.String:
		var ok bool
		if v, ok = parseIntText(n.Str); !ok {
			d.errf(n.Pos, key, "must be a whole number, not %s", describe(n))
			return 0, false
		}
	default:
		d.errf(n.Pos, key, "must be a whole number, not %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		msg := "is %d; it must be between %d and %d"
		if raw := n.Str; raw != "" && v >= 1000 && strings.ContainsAny(lastByte(raw), "kKmMgG") {
			msg += " (UCL multiplies by the suffix: " + raw + " is a size, not a count)"
		}
		d.errf(n.Pos, key, msg, v, lo, hi)
		return 0, false
	}
	return v, true
}

func parseIntText(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	var v int64
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' || v > (math.MaxInt64-9)/10 {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

func lastByte(s string) string {
	if s == "" {
		return ""
	}
	return s[len(s)-1:]
}

// duration reads a time: a UCL time value (30s, 5min, 1h), a plain number
// of seconds, or the same written as a string ("30s", which is also what
// UCL makes of `30s ;` with a space before the semicolon).
func (d *decoder) duration(key string, n *ucl.Node, lo, hi time.Duration) (time.Duration, bool) {
	var v time.Duration
	ok := false
	switch n.Kind {
	case ucl.Time, ucl.Float:
		v, ok = secondsToDuration(n.Float)
	case ucl.Int:
		v, ok = secondsToDuration(float64(n.Int))
	case ucl.String:
		v, ok = parseDurationText(n.Str)
	}
	if !ok {
		d.errf(n.Pos, key, "must be a duration such as 30s, 5min, 1h or a number of seconds, not %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		msg := "is " + humanDuration(v) + "; it must be between " + humanDuration(lo) + " and " + humanDuration(hi)
		if raw := n.Str; n.Kind == ucl.Int && strings.ContainsAny(lastByte(raw), "mM") {
			msg += "; in UCL " + raw + " means " + raw[:len(raw)-1] + " million (m is mega): write " + raw[:len(raw)-1] + "min for minutes"
		}
		d.errf(n.Pos, key, "%s", msg)
		return 0, false
	}
	return v, true
}

const mib = 1 << 20

// sizeMB reads a size in megabytes, following bhyve's rule that vmstated
// inherits: a plain number below 1048576 is megabytes, one at or above it
// is bytes. UCL's own suffixes give bytes (2GB = 2 GiB, 2G = 2*10^9); a
// quoted size uses binary units whatever its spelling ("2G" = 2 GiB).
func (d *decoder) sizeMB(key string, n *ucl.Node, lo, hi int64) (int64, bool) {
	how := "write megabytes (2048) or a size with a unit (2GB)"
	var bytes int64
	switch n.Kind {
	case ucl.Int:
		if n.Int < 0 {
			d.errf(n.Pos, key, "must not be negative; %s", how)
			return 0, false
		}
		if n.Int < mib {
			return d.sizeRange(key, n, n.Int, lo, hi)
		}
		bytes = n.Int
		raw := n.Str
		if bytes%mib != 0 && bytes%1000 == 0 && strings.ContainsAny(lastByte(raw), "kKmMgG") {
			d.warnf(n.Pos, key, "%s = %s is %d bytes (%d MiB) in UCL; write %sB for %s %siB",
				lastPart(key), raw, bytes, roundMiB(bytes), raw, raw[:len(raw)-1], strings.ToUpper(lastByte(raw)))
			return d.sizeRange(key, n, roundMiB(bytes), lo, hi)
		}
	case ucl.Float:
		if n.Float < 0 || math.IsNaN(n.Float) || n.Float > math.MaxInt64/2 {
			d.errf(n.Pos, key, "is out of range; %s", how)
			return 0, false
		}
		if n.Float < mib {
			if n.Float != math.Trunc(n.Float) {
				d.errf(n.Pos, key, "is %s megabytes, not a whole number; %s", describe(n), how)
				return 0, false
			}
			return d.sizeRange(key, n, int64(n.Float), lo, hi)
		}
		bytes = int64(n.Float)
	case ucl.String:
		b, ok := parseSizeText(n.Str)
		if !ok {
			d.errf(n.Pos, key, "cannot read %q as a size; %s", n.Str, how)
			return 0, false
		}
		bytes = b
	default:
		d.errf(n.Pos, key, "must be a size, not %s; %s", describe(n), how)
		return 0, false
	}
	mb := roundMiB(bytes)
	if bytes%mib != 0 {
		d.warnf(n.Pos, key, "%d bytes is not a whole number of MiB; using %d MiB", bytes, mb)
	}
	return d.sizeRange(key, n, mb, lo, hi)
}

func roundMiB(bytes int64) int64 { return (bytes + mib/2) / mib }

func (d *decoder) sizeRange(key string, n *ucl.Node, mb, lo, hi int64) (int64, bool) {
	if mb < lo || mb > hi {
		d.errf(n.Pos, key, "is %d MB; it must be between %d and %d MB", mb, lo, hi)
		return 0, false
	}
	return mb, true
}

// enum reads one of a fixed set of words (case-insensitive).
func (d *decoder) enum(key string, n *ucl.Node, allowed ...string) (string, bool) {
	s := ""
	switch n.Kind {
	case ucl.String:
		s = strings.ToLower(strings.TrimSpace(n.Str))
	default:
		s, _ = scalarText(n)
	}
	for _, a := range allowed {
		if s == a {
			return a, true
		}
	}
	msg := "must be one of " + strings.Join(allowed, ", ") + ", not " + describe(n)
	if n.Kind == ucl.String {
		if sg := suggest(s, allowed); sg != "" {
			msg += "; did you mean " + sg + "?"
		}
	}
	d.errf(n.Pos, key, "%s", msg)
	return "", false
}

// items returns the elements of a list, or of a key repeated several
// times; a single value counts as a one-element list when single is true.
func (d *decoder) items(key string, n *ucl.Node, single bool, example string) ([]*ucl.Node, bool) {
	if n.Kind == ucl.Array {
		return n.Items, true
	}
	if single {
		return []*ucl.Node{n}, true
	}
	d.errf(n.Pos, key, "must be a list, not %s; write %s = %s;", describe(n), lastPart(key), example)
	return nil, false
}

// stringList reads a list of strings; numbers in it are taken as text.
func (d *decoder) stringList(key string, n *ucl.Node, single bool, example string) ([]string, bool) {
	items, ok := d.items(key, n, single, example)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := scalarText(it)
		if !ok || it.Kind == ucl.Bool {
			d.errf(it.Pos, key, "list elements must be strings, not %s", describe(it))
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (d *decoder) intList(key string, n *ucl.Node, lo, hi int64) ([]int, bool) {
	items, _ := d.items(key, n, true, "")
	out := make([]int, 0, len(items))
	for _, it := range items {
		v, ok := d.integer(key, it, lo, hi)
		if !ok {
			return nil, false
		}
		out = append(out, int(v))
	}
	return out, true
}

// describe shows a value in a message: its text for scalars, its kind
// otherwise.
func describe(n *ucl.Node) string {
	switch n.Kind {
	case ucl.String:
		return "\"" + n.Str + "\""
	case ucl.Int, ucl.Float, ucl.Bool:
		s, _ := scalarText(n)
		return s
	case ucl.Time:
		s, _ := scalarText(n)
		return s + " seconds (a time value)"
	}
	return kindName(n.Kind)
}

// lastPart is the last element of a dotted key path ("qemu.disk.path" ->
// "path"), for examples in messages.
func lastPart(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// humanDuration writes a duration the way a config would: 90s, 5min, 24h,
// 30d.
func humanDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0 && d != 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0 && d != 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0 && d != 0 && d < time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "min"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
