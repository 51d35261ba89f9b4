package config

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vmstated/vmstated/ucl"
)

func itoa(i int) string { return strconv.Itoa(i) }

func kindName(k ucl.Kind) string {
	switch k {
	case ucl.Null:
		return "null"
	case ucl.Bool:
		return "a boolean"
	case ucl.Int:
		return "an integer"
	case ucl.Float:
		return "a number with a fraction"
	case ucl.Time:
		return "a time value"
	case ucl.String:
		return "a string"
	case ucl.Array:
		return "a list"
	case ucl.Object:
		return "a section"
	}
	return "an unknown kind of value"
}

// scalarText renders a scalar node as text; ok is false for lists,
// sections and null.
func scalarText(n *ucl.Node) (string, bool) {
	switch n.Kind {
	case ucl.Int, ucl.Float, ucl.Time, ucl.Bool:
		if n.Str != "" {
			return n.Str, true // as written: "14.0", "8G", "yes"
		}
	}
	switch n.Kind {
	case ucl.String:
		return n.Str, true
	case ucl.Int:
		return strconv.FormatInt(n.Int, 10), true
	case ucl.Float, ucl.Time:
		return strconv.FormatFloat(n.Float, 'g', -1, 64), true
	case ucl.Bool:
		return strconv.FormatBool(n.Bool), true
	}
	return "", false
}

// parseBoolText accepts the words UCL treats as booleans, in any case, for
// a value that reached us as a quoted string.
func parseBoolText(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

// timeUnits are UCL's time suffixes plus the ones a person writes in a
// quoted string ("m" means minutes there, as in Go and most tools).
var timeUnits = []struct {
	suffix string
	mult   float64
}{
	{"ms", 0.001}, {"min", 60}, {"mins", 60}, {"minutes", 60}, {"minute", 60},
	{"sec", 1}, {"secs", 1}, {"seconds", 1}, {"second", 1},
	{"hours", 3600}, {"hour", 3600},
	{"days", 86400}, {"day", 86400},
	{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {"w", 604800},
}

// parseDurationText reads a duration written as a string: "30s", "5min",
// "1.5h", "90" (seconds) or Go's form "1m30s".
func parseDurationText(s string) (time.Duration, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return secondsToDuration(f)
	}
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyz")
	unit := strings.TrimSpace(s[len(num):])
	num = strings.TrimSpace(num)
	if f, err := strconv.ParseFloat(num, 64); err == nil {
		for _, u := range timeUnits {
			if u.suffix == unit {
				return secondsToDuration(f * u.mult)
			}
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, true
	}
	return 0, false
}

func secondsToDuration(f float64) (time.Duration, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f > float64(math.MaxInt64)/1e9 || f < float64(math.MinInt64)/1e9 {
		return 0, false
	}
	return time.Duration(math.Round(f * 1e9)), true
}

// sizeUnits are the binary units a person means in a quoted size.
var sizeUnits = map[string]int64{
	"":  1 << 20, // a bare number is megabytes, vmstated's unit
	"b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSizeText reads a size written as a string into bytes: "2G", "2GiB",
// "512M", "1.5GB", "2048" (megabytes). Units are binary.
func parseSizeText(s string) (int64, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyz")
	unit := strings.TrimSpace(s[len(num):])
	num = strings.TrimSpace(num)
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, false
	}
	if i, err := strconv.ParseInt(num, 10, 64); err == nil {
		if i < 0 || (i > 0 && mult > math.MaxInt64/i) {
			return 0, false
		}
		return i * mult, true
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f*float64(mult) > float64(math.MaxInt64) {
		return 0, false
	}
	return int64(math.Round(f * float64(mult))), true
}

func fmtDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
