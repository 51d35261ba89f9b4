package ucl

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Unmarshal parses UCL data (macros off, no variables, keys as written) and
// stores the result in v, which must be a non-nil pointer.
//
// Into *any it stores the plain form described at Node.Value. Otherwise it
// decodes like Node.Decode.
func Unmarshal(data []byte, v any) error {
	if pa, ok := v.(*any); ok && pa != nil {
		// Build the plain values directly, without a Node tree.
		opts := Options{}
		p := &parser{opts: &opts, direct: true}
		root, err := p.parseRoot(string(data), "")
		if err != nil {
			return err
		}
		*pa = root.val
		return nil
	}
	n, err := Parse(data, Options{})
	if err != nil {
		return err
	}
	return n.Decode(v)
}

var (
	durationType        = reflect.TypeOf(time.Duration(0))
	nodeType            = reflect.TypeOf(Node{})
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// Decode stores the subtree in v, which must be a non-nil pointer.
//
//   - Into *any: the plain form of Value.
//   - Structs from objects: a member matches the field tagged `ucl:"name"`,
//     or else the field whose lowercased name equals the lowercased key. A
//     tag of "-" skips the field. Members without a field are ignored.
//   - Maps with string keys from objects; slices and arrays from arrays. A
//     single value decodes into a slice as a one-element slice, so a key
//     may be given once or repeated.
//   - Pointers are allocated as needed; null sets them to nil.
//   - time.Duration from time values (30s, 5min), from plain numbers
//     (seconds) and from strings that time.ParseDuration accepts (1h30m).
//   - Integers from integers, and from floats and time values (seconds)
//     with no fraction; all are range-checked against the target type.
//   - Floats from any number; bool from booleans; string from strings and,
//     as written in the source, from numbers and booleans.
//   - Types implementing encoding.TextUnmarshaler from strings.
//   - *Node and Node fields receive the subtree itself.
//
// Errors are *DecodeError values naming the position and key path of the
// offending value.
func (n *Node) Decode(v any) error {
	if n == nil {
		return errors.New("ucl: Decode called on a nil *Node")
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("ucl: Decode needs a non-nil pointer, not %T", v)
	}
	var d decoder
	return d.decode(n, rv.Elem())
}

type decoder struct {
	path []string
}

func (d *decoder) errf(n *Node, format string, args ...any) error {
	var pos Pos
	if n != nil {
		pos = n.Pos
	}
	return &DecodeError{Pos: pos, Path: strings.Join(d.path, ""), Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) push(key string) {
	if len(d.path) > 0 {
		key = "." + key
	}
	d.path = append(d.path, key)
}

func (d *decoder) pushIndex(i int) { d.path = append(d.path, "["+strconv.Itoa(i)+"]") }
func (d *decoder) pop()            { d.path = d.path[:len(d.path)-1] }

// describe names a node's kind and value for messages.
func describe(n *Node) string {
	switch n.Kind {
	case String:
		s := n.Str
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return "string " + strconv.Quote(s)
	case Object, Array:
		if n.Implicit {
			return fmt.Sprintf("a key given %d times", len(n.Items))
		}
		return "an " + n.Kind.String()
	case Null:
		return "null"
	}
	return n.Kind.String() + " " + n.Str
}

func (d *decoder) decode(n *Node, v reflect.Value) error {
	t := v.Type()
	if t == nodeType {
		v.Set(reflect.ValueOf(*n))
		return nil
	}
	if t.Kind() == reflect.Pointer {
		if t.Elem() == nodeType {
			v.Set(reflect.ValueOf(n))
			return nil
		}
		if n.Kind == Null {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return d.decode(n, v.Elem())
	}
	if t == durationType {
		return d.duration(n, v)
	}
	if v.CanAddr() && reflect.PointerTo(t).Implements(textUnmarshalerType) && n.Kind == String {
		u := v.Addr().Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(n.Str)); err != nil {
			return d.errf(n, "%v", err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return d.errf(n, "cannot decode into non-empty interface %s", t)
		}
		if n.Kind == Null {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(n.Value()))
		}
		return nil
	case reflect.Struct:
		return d.structure(n, v)
	case reflect.Map:
		return d.mapping(n, v)
	case reflect.Slice:
		return d.slice(n, v)
	case reflect.Array:
		return d.array(n, v)
	}
	if n.Implicit {
		last := n.Items[len(n.Items)-1]
		return d.errf(last, "key given %d times, but %s holds one value (first at %s)", len(n.Items), t, n.Pos)
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind != Bool {
			return d.errf(n, "cannot use %s as a boolean (use true/false, yes/no, on/off)", describe(n))
		}
		v.SetBool(n.Bool)
	case reflect.String:
		switch n.Kind {
		case String, Int, Float, Time, Bool:
			v.SetString(n.Str)
		default:
			return d.errf(n, "cannot use %s as a string", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := d.integer(n, t)
		if err != nil {
			return err
		}
		if v.OverflowInt(i) {
			return d.errf(n, "%s does not fit in %s (range %d to %d)", describe(n), t, int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		i, err := d.integer(n, t)
		if err != nil {
			return err
		}
		if i < 0 || v.OverflowUint(uint64(i)) {
			return d.errf(n, "%s does not fit in %s (range 0 to %d)", describe(n), t, uint64(1)<<(t.Bits()-1)*2-1)
		}
		v.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		var f float64
		switch n.Kind {
		case Int:
			f = float64(n.Int)
		case Float, Time:
			f = n.Float
		default:
			return d.errf(n, "cannot use %s as a number", describe(n))
		}
		if t.Kind() == reflect.Float32 && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
			return d.errf(n, "%s does not fit in float32", describe(n))
		}
		v.SetFloat(f)
	default:
		return d.errf(n, "cannot decode into %s", t)
	}
	return nil
}

func (d *decoder) integer(n *Node, t reflect.Type) (int64, error) {
	switch n.Kind {
	case Int:
		return n.Int, nil
	case Float, Time:
		if n.Float == math.Trunc(n.Float) && n.Float >= -(1<<63) && n.Float < 1<<63 {
			return int64(n.Float), nil
		}
		return 0, d.errf(n, "%s is not a whole number, as %s needs", describe(n), t)
	}
	return 0, d.errf(n, "cannot use %s as an integer (%s)", describe(n), t)
}

func (d *decoder) duration(n *Node, v reflect.Value) error {
	var secs float64
	switch n.Kind {
	case Int:
		secs = float64(n.Int)
	case Float, Time:
		secs = n.Float
	case String:
		dur, err := time.ParseDuration(n.Str)
		if err != nil {
			return d.errf(n, "cannot use %s as a duration (write seconds, 30s, 5min, 1h or 1h30m)", describe(n))
		}
		v.SetInt(int64(dur))
		return nil
	default:
		return d.errf(n, "cannot use %s as a duration (write seconds, 30s, 5min, 1h or 1h30m)", describe(n))
	}
	ns := secs * float64(time.Second)
	if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
		return d.errf(n, "duration %s is out of range", n.Str)
	}
	v.SetInt(int64(math.Round(ns)))
	return nil
}

func (d *decoder) structure(n *Node, v reflect.Value) error {
	if n.Kind != Object {
		return d.errf(n, "cannot use %s as an object (%s)", describe(n), v.Type())
	}
	fields := structFields(v.Type())
	for i := range n.Fields {
		f := &n.Fields[i]
		idx, ok := fields.byName[f.Key]
		if !ok {
			idx, ok = fields.byName[strings.ToLower(f.Key)]
			if !ok {
				continue
			}
		}
		fv := v.FieldByIndex(idx)
		d.push(f.Key)
		if err := d.decode(f.Value, fv); err != nil {
			return err
		}
		d.pop()
	}
	return nil
}

type fieldMap struct {
	byName map[string][]int
}

var fieldCache sync.Map // reflect.Type -> *fieldMap

// structFields maps key names to struct field indexes: the tag name as
// written and lowercased, or the lowercased field name.
func structFields(t reflect.Type) *fieldMap {
	if fm, ok := fieldCache.Load(t); ok {
		return fm.(*fieldMap)
	}
	fm := &fieldMap{byName: map[string][]int{}}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("ucl") == "" {
			continue
		}
		name := sf.Tag.Get("ucl")
		if i := strings.IndexByte(name, ','); i >= 0 {
			name = name[:i]
		}
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, ok := fm.byName[name]; !ok {
			fm.byName[name] = sf.Index
		}
		if l := strings.ToLower(name); l != name {
			if _, ok := fm.byName[l]; !ok {
				fm.byName[l] = sf.Index
			}
		}
	}
	fieldCache.Store(t, fm)
	return fm
}

func (d *decoder) mapping(n *Node, v reflect.Value) error {
	t := v.Type()
	if n.Kind != Object {
		return d.errf(n, "cannot use %s as an object (%s)", describe(n), t)
	}
	if t.Key().Kind() != reflect.String {
		return d.errf(n, "cannot decode an object into %s: map keys must be strings", t)
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(n.Fields)))
	}
	for i := range n.Fields {
		f := &n.Fields[i]
		ev := reflect.New(t.Elem()).Elem()
		d.push(f.Key)
		if err := d.decode(f.Value, ev); err != nil {
			return err
		}
		d.pop()
		v.SetMapIndex(reflect.ValueOf(f.Key).Convert(t.Key()), ev)
	}
	return nil
}

func (d *decoder) elems(n *Node) []*Node {
	if n.Kind == Array {
		return n.Items
	}
	return []*Node{n}
}

func (d *decoder) slice(n *Node, v reflect.Value) error {
	t := v.Type()
	if t.Elem().Kind() == reflect.Uint8 && n.Kind == String {
		v.SetBytes([]byte(n.Str))
		return nil
	}
	if n.Kind == Null {
		v.SetZero()
		return nil
	}
	items := d.elems(n)
	s := reflect.MakeSlice(t, len(items), len(items))
	for i, it := range items {
		d.pushIndex(i)
		if err := d.decode(it, s.Index(i)); err != nil {
			return err
		}
		d.pop()
	}
	v.Set(s)
	return nil
}

func (d *decoder) array(n *Node, v reflect.Value) error {
	items := d.elems(n)
	if len(items) > v.Len() {
		return d.errf(n, "%d values do not fit in %s", len(items), v.Type())
	}
	for i, it := range items {
		d.pushIndex(i)
		if err := d.decode(it, v.Index(i)); err != nil {
			return err
		}
		d.pop()
	}
	return nil
}
