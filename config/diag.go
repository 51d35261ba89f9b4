package config

import (
	"errors"
	"sort"
	"strings"

	"github.com/vmstated/vmstated/ucl"
)

// Severity tells whether a Diagnostic stops a config from loading.
type Severity uint8

const (
	// Error: the config is not used.
	Error Severity = iota
	// Warning: the config is used; something in it deserves attention
	// (an unknown key, a value read in a way the writer may not expect).
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem found in a config, located by file, line and
// column and naming the key it concerns.
type Diagnostic struct {
	Pos      ucl.Pos
	Key      string
	Severity Severity
	Msg      string
}

// String formats the diagnostic as "file:line:col: key: message"; warnings
// get a "warning: " prefix before the message. Parts that are unknown are
// left out.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Pos.File != "" {
		b.WriteString(d.Pos.File)
		if d.Pos.Line > 0 {
			b.WriteString(":")
			b.WriteString(itoa(d.Pos.Line))
			if d.Pos.Col > 0 {
				b.WriteString(":")
				b.WriteString(itoa(d.Pos.Col))
			}
		}
		b.WriteString(": ")
	}
	if d.Key != "" {
		b.WriteString(d.Key)
		b.WriteString(": ")
	}
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error makes a Diagnostic usable as an error.
func (d Diagnostic) Error() string { return d.String() }

// Diagnostics is a list of diagnostics that is also an error: its message
// has one diagnostic per line.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes every diagnostic to errors.Is and errors.As.
func (ds Diagnostics) Unwrap() []error {
	errs := make([]error, len(ds))
	for i, d := range ds {
		errs[i] = d
	}
	return errs
}

// Errors returns the diagnostics of severity Error.
func (ds Diagnostics) Errors() Diagnostics { return ds.filter(Error) }

// Warnings returns the diagnostics of severity Warning.
func (ds Diagnostics) Warnings() Diagnostics { return ds.filter(Warning) }

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

func (ds Diagnostics) filter(s Severity) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// sortDiagnostics orders by file, line, column, then message, so output is
// stable whatever order checks ran in.
func sortDiagnostics(ds []Diagnostic) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		return a.Msg < b.Msg
	})
}

// Sentinel errors.
var (
	// ErrInvalid: a config has errors; the Diagnostics say which.
	ErrInvalid = errors.New("invalid config")
)
