package ucl

import (
	"math"
	"strconv"
)

// Kind is the type of a Node.
type Kind uint8

// The kinds of value a UCL document holds.
const (
	Null   Kind = iota // null
	Bool               // true, yes, on, false, no, off
	Int                // integer, possibly with a size suffix (10k, 8G, 2gb)
	Float              // number with a fraction or exponent, nan, inf
	Time               // number with a time suffix (30s, 5min, 1.5h), in seconds
	String             // quoted, unquoted or heredoc text
	Array              // [ ... ], or the values of a repeated key
	Object             // { ... } or the whole document
)

var kindNames = [...]string{"null", "bool", "int", "float", "time", "string", "array", "object"}

// String returns the lowercase name of the kind ("int", "object", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Pos is a position in a source file. Line and Col are 1-based; Col counts
// characters (runes), not bytes.
type Pos struct {
	File      string
	Line, Col int
}

// String formats the position as "file:line:col", or "line:col" when File is
// empty.
func (p Pos) String() string {
	s := strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
	if p.File != "" {
		return p.File + ":" + s
	}
	return s
}

// Node is one parsed value with the position where it starts.
//
// Only the fields that belong to the node's Kind are meaningful. Str holds
// the text of a String; for Int, Float, Time and Bool nodes it holds the
// value as written in the source (for example "14.0", "8G" or "yes"), which
// lets a caller that wants text get exactly what the user typed.
type Node struct {
	Kind     Kind
	Implicit bool  // Array made by repeating a key
	Bool     bool  // Bool
	prio     uint8 // priority of the chunk the value came from (.priority)
	Pos      Pos   // where the value starts
	Str      string
	Int      int64   // Int
	Float    float64 // Float, and Time (seconds)
	Items    []*Node // Array elements
	Fields   []Field // Object members in source order; keys are unique

	val any // the plain form of an object or array, when parsing straight to plain values
}

// Field is one member of an object. A key given more than once holds an
// implicit Array (Value.Implicit is true) of all its values in order.
type Field struct {
	Key    string
	KeyPos Pos
	Value  *Node
}

// Get returns the value of the member key of an object, or nil when n is
// nil, is not an object or has no such member. Keys compare exactly (parse
// with Options.LowercaseKeys for case-insensitive configs).
func (n *Node) Get(key string) *Node {
	if n == nil || n.Kind != Object {
		return nil
	}
	for i := range n.Fields {
		if n.Fields[i].Key == key {
			return n.Fields[i].Value
		}
	}
	return nil
}

// Value returns the plain Go form of the subtree: map[string]any, []any,
// string, int64, float64 (Float and Time), bool or nil. Implicit arrays
// become []any like explicit ones.
func (n *Node) Value() any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case Bool:
		return n.Bool
	case Int:
		return n.Int
	case Float, Time:
		return n.Float
	case String:
		return n.Str
	case Array:
		a := make([]any, len(n.Items))
		for i, it := range n.Items {
			a[i] = it.Value()
		}
		return a
	case Object:
		m := make(map[string]any, len(n.Fields))
		for i := range n.Fields {
			f := &n.Fields[i]
			m[f.Key] = f.Value.Value()
		}
		return m
	}
	return nil
}

// hasNonFinite reports whether the subtree holds a NaN or infinite number.
func (n *Node) hasNonFinite() bool {
	switch n.Kind {
	case Float, Time:
		return math.IsNaN(n.Float) || math.IsInf(n.Float, 0)
	case Array:
		for _, it := range n.Items {
			if it.hasNonFinite() {
				return true
			}
		}
	case Object:
		for i := range n.Fields {
			if n.Fields[i].Value.hasNonFinite() {
				return true
			}
		}
	}
	return false
}
