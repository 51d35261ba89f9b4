package ucl

import (
	"errors"
	"strings"
)

// ErrSyntax is wrapped by every ParseError, so callers can test for a parse
// failure with errors.Is.
var ErrSyntax = errors.New("ucl: syntax error")

// ErrIncludeLoop is wrapped by the ParseError for a file that includes
// itself, directly or through other files.
var ErrIncludeLoop = errors.New("ucl: include loop")

// ParseError describes input that is not valid UCL, or a macro that failed.
type ParseError struct {
	Pos Pos    // where the problem is (for an unterminated construct: where it started)
	Msg string // what is wrong, in plain words
	// IncludedFrom lists the .include lines that led to the file in Pos,
	// innermost first; empty for the top-level file.
	IncludedFrom []Pos
	err          error // optional cause (file system error, ErrIncludeLoop)
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	b.WriteString(e.Msg)
	for _, p := range e.IncludedFrom {
		b.WriteString(" (included from ")
		b.WriteString(p.String())
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns ErrSyntax and, when there is one, the underlying cause.
func (e *ParseError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrSyntax, e.err}
	}
	return []error{ErrSyntax}
}

// DecodeError describes a value that does not fit the Go type it is decoded
// into.
type DecodeError struct {
	Pos  Pos    // where the offending value starts
	Path string // key path of the value, e.g. "vm.disk[1].size"; empty for the root
	Msg  string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
