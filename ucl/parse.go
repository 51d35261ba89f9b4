package ucl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Options control Parse and ParseFile. The zero value parses one document
// the way libucl's ucl-tool does: keys as written, no macros, no variables.
type Options struct {
	// Filename names the input in positions and error messages. It is also
	// the base for relative .include paths and the value of $FILENAME and
	// $CURDIR.
	Filename string
	// LowercaseKeys lowercases (ASCII) every key, for configs whose keys
	// are case-insensitive.
	LowercaseKeys bool
	// Macros turns on .include, .try_include and .priority. When off, a
	// line starting with '.' is an error.
	Macros bool
	// Vars are the variables for $NAME and ${NAME}. Expansion is on when
	// Vars is non-nil or Macros is set; FILENAME and CURDIR are then always
	// defined as the absolute path of the file being parsed and its
	// directory (entries of those names in Vars are ignored). Unknown
	// variables stay as written.
	Vars map[string]string
	// ReadFile reads included files; nil means a reader of regular files
	// of at most MaxFileSize bytes.
	ReadFile func(name string) ([]byte, error)
	// Glob expands .include(glob=true) patterns; nil means filepath.Glob.
	Glob func(pattern string) ([]string, error)
}

// maxDepth bounds the nesting of objects and arrays, so that hostile input
// cannot exhaust the stack or memory.
const maxDepth = 1000

// maxIncludeDepth bounds nested .include macros (libucl allows 16).
const maxIncludeDepth = 16

// Parse parses a UCL document into a tree of Nodes. The root is an Object,
// or an Array when the document is a top-level [ ... ].
func Parse(data []byte, opts Options) (*Node, error) {
	p := newParser(&opts)
	return p.parseRoot(string(data), opts.Filename)
}

// ParseFile reads and parses the file at path, with Options.Filename set to
// path.
func ParseFile(path string, opts Options) (*Node, error) {
	read := opts.ReadFile
	if read == nil {
		read = readRegular
	}
	data, err := read(path)
	if err != nil {
		return nil, fmt.Errorf("ucl: %w", err)
	}
	opts.Filename = path
	return Parse(data, opts)
}

// objb is an object under construction. Its fields live in parser.fields
// from start on until the object is finished.
type objb struct {
	n     *Node
	start int
	index map[string]int // key -> index in parser.fields, for large objects

	// When the parser builds plain values (parser.direct), members go
	// straight into m; implicit marks keys whose value is an implicit array.
	m        map[string]any
	implicit map[string]bool
}

// indexFrom is the member count above which an object gets a key index.
const indexFrom = 12

type parser struct {
	opts *Options
	src  string
	pos  int
	file string

	// position cursor: the line and column of offset curOff
	curOff, curLine, curCol int

	depth int
	prio  uint8

	// bracketFrom..bracketAt: a span with no statement end that ends at a
	// '{' or '[' (see scanNextKey)
	bracketFrom, bracketAt int

	nodes  []Node
	fslab  []Field
	islab  []*Node
	fields []Field // members of the open objects, innermost last
	items  []*Node // elements of the open arrays, innermost last

	// direct builds plain values (map[string]any, []any, ...) instead of a
	// Node tree, for Unmarshal into *any; it needs no macros and keeps no
	// positions but those of errors.
	direct bool
	free   []*Node
	vitems []any // elements of the open arrays in direct mode

	expandVars bool
	vars       map[string]string // caller's variables plus FILENAME, CURDIR
	chain      []string          // absolute paths of the files being parsed
	from       []Pos             // include sites, innermost first
}

func newParser(opts *Options) *parser {
	p := &parser{opts: opts}
	if opts.Macros || opts.Vars != nil {
		p.expandVars = true
		p.vars = make(map[string]string, len(opts.Vars)+2)
		for k, v := range opts.Vars {
			p.vars[k] = v
		}
	}
	return p
}

func (p *parser) setSource(src, file string) {
	p.src, p.file, p.pos = src, file, 0
	p.bracketFrom, p.bracketAt = 0, 0
	if strings.HasPrefix(src, "\uFEFF") {
		p.pos = 3
	}
	p.curOff, p.curLine, p.curCol = p.pos, 1, 1
	if p.expandVars {
		if file == "" {
			p.vars["FILENAME"] = "undef"
			if wd, err := os.Getwd(); err == nil {
				p.vars["CURDIR"] = wd
			}
		} else {
			abs, err := filepath.Abs(file)
			if err != nil {
				abs = file
			}
			p.vars["FILENAME"] = abs
			p.vars["CURDIR"] = filepath.Dir(abs)
		}
	}
}

func (p *parser) parseRoot(src, file string) (*Node, error) {
	p.setSource(src, file)
	if file != "" {
		if abs, err := filepath.Abs(file); err == nil {
			p.chain = append(p.chain, abs)
		}
	}
	if err := p.skipBlank(); err != nil {
		return nil, err
	}
	if p.pos < len(p.src) && p.src[p.pos] == '[' {
		n, err := p.parseArray()
		if err != nil {
			return nil, err
		}
		return n, p.trailing("]")
	}
	root := p.newNode(Object, p.pos)
	b := p.newObjb(root)
	if err := p.parseDocInto(&b); err != nil {
		return nil, err
	}
	p.finishObject(&b)
	return root, nil
}

// parseDocInto parses a whole file (top level or included) as the members
// of the object b. Braces around the document are optional.
func (p *parser) parseDocInto(b *objb) error {
	if err := p.skipBlank(); err != nil {
		return err
	}
	if p.pos < len(p.src) && p.src[p.pos] == '{' {
		open := p.pos
		p.pos++
		if err := p.parseBody(b, true, open); err != nil {
			return err
		}
		return p.trailing("}")
	}
	return p.parseBody(b, false, 0)
}

// trailing rejects anything but blanks and comments after the closing
// bracket of a top-level object or array. libucl ignores such text; that
// silently drops configuration, so it is an error here.
func (p *parser) trailing(closer string) error {
	if err := p.skipBlank(); err != nil {
		return err
	}
	if p.pos < len(p.src) {
		return p.errf(p.pos, "unexpected %s after the closing '%s' of the top-level value (remove it, or remove the outer brackets)", p.describe(p.pos), closer)
	}
	return nil
}

// ---- positions and errors

func (p *parser) posAt(off int) Pos {
	if off < p.curOff {
		p.curOff, p.curLine, p.curCol = 0, 1, 1
		if strings.HasPrefix(p.src, "\uFEFF") && off >= 3 {
			p.curOff = 3
		}
	}
	seg := p.src[p.curOff:off]
	if k := strings.Count(seg, "\n"); k > 0 {
		p.curLine += k
		last := strings.LastIndexByte(seg, '\n')
		p.curCol = 1 + utf8.RuneCountInString(seg[last+1:])
	} else {
		p.curCol += utf8.RuneCountInString(seg)
	}
	p.curOff = off
	return Pos{File: p.file, Line: p.curLine, Col: p.curCol}
}

func (p *parser) errf(off int, format string, args ...any) *ParseError {
	e := &ParseError{Pos: p.posAt(off), Msg: fmt.Sprintf(format, args...)}
	if len(p.from) > 0 {
		e.IncludedFrom = append([]Pos(nil), p.from...)
	}
	return e
}

// unterminated reports a construct that starts at off and never ends.
func (p *parser) unterminated(off int, what, why string) *ParseError {
	pos := p.posAt(off)
	return p.errf(off, "unterminated %s started at %d:%d: %s", what, pos.Line, pos.Col, why)
}

// describe names the byte at off for an error message.
func (p *parser) describe(off int) string {
	if off >= len(p.src) {
		return "end of input"
	}
	c := p.src[off]
	switch c {
	case '\n':
		return "end of line"
	case '\r':
		return "carriage return"
	case '\t':
		return "tab"
	case ' ':
		return "space"
	}
	if c < 0x20 || c == 0x7f {
		return fmt.Sprintf("control character %#02x", c)
	}
	if c >= 0x80 {
		r, _ := utf8.DecodeRuneInString(p.src[off:])
		return fmt.Sprintf("%q", r)
	}
	return fmt.Sprintf("'%c'", c)
}

// ---- allocation

// newObjb starts building the object n.
func (p *parser) newObjb(n *Node) objb {
	if p.direct {
		m := make(map[string]any)
		n.val = m
		return objb{n: n, m: m}
	}
	return objb{n: n, start: len(p.fields)}
}

func (p *parser) newNode(k Kind, off int) *Node {
	var n *Node
	if p.direct {
		// Plain-value mode: a node lives only until its value is stored
		// in its container, then goes back to the free list.
		if k := len(p.free); k > 0 {
			n = p.free[k-1]
			p.free = p.free[:k-1]
		} else {
			n = new(Node)
		}
		n.Kind = k
		return n
	}
	n = p.allocNode()
	n.Kind = k
	n.Pos = p.posAt(off)
	n.prio = p.prio
	return n
}

func (p *parser) allocNode() *Node {
	if len(p.nodes) == cap(p.nodes) {
		size := 2 * cap(p.nodes)
		if size < 16 {
			size = 16
		} else if size > 1024 {
			size = 1024
		}
		p.nodes = make([]Node, 0, size)
	}
	p.nodes = p.nodes[:len(p.nodes)+1]
	return &p.nodes[len(p.nodes)-1]
}

// plain returns the plain value of v and recycles v (plain-value mode).
func (p *parser) plain(v *Node) any {
	var x any
	switch v.Kind {
	case Object, Array:
		x = v.val
	case Bool:
		x = v.Bool
	case Int:
		x = v.Int
	case Float, Time:
		x = v.Float
	case String:
		x = v.Str
	}
	*v = Node{}
	p.free = append(p.free, v)
	return x
}

func (p *parser) finishObject(b *objb) {
	if p.direct {
		return
	}
	fs := p.fields[b.start:]
	if len(fs) > 0 {
		if cap(p.fslab)-len(p.fslab) < len(fs) {
			size := 4 * len(fs)
			if size < 256 {
				size = 256
			}
			p.fslab = make([]Field, 0, size)
		}
		l := len(p.fslab)
		p.fslab = append(p.fslab, fs...)
		b.n.Fields = p.fslab[l:len(p.fslab):len(p.fslab)]
	}
	clear(fs)
	p.fields = p.fields[:b.start]
}

func (p *parser) finishArray(n *Node, start int) {
	if p.direct {
		vs := p.vitems[start:]
		a := make([]any, len(vs))
		copy(a, vs)
		clear(vs)
		p.vitems = p.vitems[:start]
		n.val = a
		return
	}
	is := p.items[start:]
	if len(is) > 0 {
		if cap(p.islab)-len(p.islab) < len(is) {
			size := 4 * len(is)
			if size < 256 {
				size = 256
			}
			p.islab = make([]*Node, 0, size)
		}
		l := len(p.islab)
		p.islab = append(p.islab, is...)
		n.Items = p.islab[l:len(p.islab):len(p.islab)]
	}
	clear(is)
	p.items = p.items[:start]
}

// add stores key = v in the object b. A repeated key of the same priority
// collects its values in an implicit array; a higher priority replaces the
// old value and a lower one is dropped.
func (p *parser) add(b *objb, key string, kpos Pos, v *Node) {
	if p.direct {
		x := p.plain(v)
		old, ok := b.m[key]
		switch {
		case !ok:
			b.m[key] = x
		case b.implicit[key]:
			b.m[key] = append(old.([]any), x)
		default:
			b.m[key] = []any{old, x}
			if b.implicit == nil {
				b.implicit = make(map[string]bool)
			}
			b.implicit[key] = true
		}
		return
	}
	i := -1
	if b.index != nil {
		if j, ok := b.index[key]; ok {
			i = j
		}
	} else {
		for j := b.start; j < len(p.fields); j++ {
			if p.fields[j].Key == key {
				i = j
				break
			}
		}
	}
	if i < 0 {
		p.fields = append(p.fields, Field{Key: key, KeyPos: kpos, Value: v})
		if b.index != nil {
			b.index[key] = len(p.fields) - 1
		} else if len(p.fields)-b.start > indexFrom {
			b.index = make(map[string]int, 2*indexFrom)
			for j := b.start; j < len(p.fields); j++ {
				b.index[p.fields[j].Key] = j
			}
		}
		return
	}
	f := &p.fields[i]
	old := f.Value
	switch {
	case v.prio < old.prio:
	case v.prio > old.prio:
		f.Value = v
		f.KeyPos = kpos
	case old.Implicit:
		old.Items = append(old.Items, v)
	default:
		arr := p.allocNode()
		arr.Kind = Array
		arr.Pos = old.Pos
		arr.prio = old.prio
		arr.Implicit = true
		arr.Items = []*Node{old, v}
		f.Value = arr
	}
}

// ---- blanks and comments

// skipBlank skips whitespace, line breaks and comments.
func (p *parser) skipBlank() error {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; c {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			p.pos++
		case '#':
			p.skipLineComment()
		case '/':
			if p.pos+1 < len(p.src) && p.src[p.pos+1] == '*' {
				if err := p.skipBlockComment(); err != nil {
					return err
				}
				continue
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

func (p *parser) skipLineComment() {
	if i := strings.IndexByte(p.src[p.pos:], '\n'); i >= 0 {
		p.pos += i + 1
	} else {
		p.pos = len(p.src)
	}
}

// skipBlockComment skips a /* */ comment at p.pos. Comments nest, and, as in
// libucl, comment markers inside double quotes do not count.
func (p *parser) skipBlockComment() error {
	start := p.pos
	q := p.pos + 2
	depth := 1
	quoted := false
	n := len(p.src)
	for q < n {
		c := p.src[q]
		if c == '"' && p.src[q-1] != '\\' {
			quoted = !quoted
		}
		if !quoted {
			if c == '*' && q+1 < n && p.src[q+1] == '/' {
				depth--
				q += 2
				if depth == 0 {
					p.pos = q
					return nil
				}
				continue
			}
			if c == '/' && q+1 < n && p.src[q+1] == '*' {
				depth++
				q += 2
				continue
			}
		}
		q++
	}
	return p.unterminated(start, "comment", "'/*' has no matching '*/' (comments nest: every '/*' inside needs its own '*/')")
}

func (p *parser) isCommentStart(q int) bool {
	c := p.src[q]
	return c == '#' || c == '/' && q+1 < len(p.src) && p.src[q+1] == '*'
}

// ---- objects

func isKeyStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '/' || c >= 0x80
}

func isKeyChar(c byte) bool {
	return isKeyStart(c) || c == '-' || c == '.'
}

// parseObject parses { ... } at p.pos.
func (p *parser) parseObject() (*Node, error) {
	open := p.pos
	if p.depth++; p.depth > maxDepth {
		return nil, p.errf(open, "objects and arrays nested more than %d deep", maxDepth)
	}
	n := p.newNode(Object, open)
	p.pos++
	b := p.newObjb(n)
	if err := p.parseBody(&b, true, open); err != nil {
		return nil, err
	}
	p.finishObject(&b)
	p.depth--
	return n, nil
}

// parseBody parses members into b until the closing '}' (braced) or the
// end of input (not braced).
func (p *parser) parseBody(b *objb, braced bool, open int) error {
	for {
		if err := p.skipBlank(); err != nil {
			return err
		}
		if p.pos >= len(p.src) {
			if braced {
				return p.unterminated(open, "object", "the '{' has no matching '}'")
			}
			return nil
		}
		switch p.src[p.pos] {
		case '}':
			if braced {
				p.pos++
				return nil
			}
			return p.errf(p.pos, "unexpected '}': there is no open '{' to close")
		case '.':
			if !p.opts.Macros {
				return p.errf(p.pos, "unexpected '.': a key must begin with a letter, digit, '_' or '/' (macros such as .include are not enabled here)")
			}
			if err := p.macro(b); err != nil {
				return err
			}
			continue
		}
		closed, err := p.parseMember(b, braced)
		if err != nil || closed {
			return err
		}
	}
}

// parseMember parses one "key [sep] value" statement, including the
// section shorthand "key name ... { }", and the separator after it. It
// reports whether the enclosing object was closed by a '}'.
func (p *parser) parseMember(b *objb, braced bool) (bool, error) {
	var chainBuf [4]objb
	chain := chainBuf[:0]
	cur := b
	nextKey := false
	for {
		keyOff := p.pos
		key, kpos, err := p.parseKey()
		if err != nil {
			return false, err
		}
		sep, err := p.parseSep(keyOff, key)
		if err != nil {
			return false, err
		}
		if !sep {
			nextKey = p.scanNextKey()
		}
		if !nextKey {
			v, container, err := p.parseValue(keyOff, key)
			if err != nil {
				return false, err
			}
			p.add(cur, key, kpos, v)
			for i := len(chain) - 1; i >= 0; i-- {
				p.finishObject(&chain[i])
			}
			p.depth -= len(chain)
			closer := -1
			if braced {
				closer = '}'
			}
			return p.afterValue(container, closer)
		}
		// Section shorthand: "key name {": the value of key is an object
		// whose only member is the rest of the statement.
		if p.depth++; p.depth > maxDepth {
			return false, p.errf(keyOff, "objects and arrays nested more than %d deep", maxDepth)
		}
		for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
			p.pos++
		}
		n := p.newNode(Object, p.pos)
		nb := p.newObjb(n) // in direct mode, sets the map that add stores
		p.add(cur, key, kpos, n)
		nb.start = len(p.fields) // the member just added belongs to cur
		chain = append(chain, nb)
		cur = &chain[len(chain)-1]
	}
}

// parseKey reads a bare or double-quoted key at p.pos.
func (p *parser) parseKey() (string, Pos, error) {
	start := p.pos
	c := p.src[start]
	var key string
	switch {
	case c == '"':
		raw, end, esc, _, err := p.lexDQ(start)
		if err != nil {
			return "", Pos{}, err
		}
		if raw == "" {
			return "", Pos{}, p.errf(start, "empty keys are not allowed")
		}
		key = raw
		if esc {
			key = unescapeDQ(raw)
		}
		p.pos = end
	case isKeyStart(c):
		q := start + 1
		for q < len(p.src) && isKeyChar(p.src[q]) {
			q++
		}
		key = p.src[start:q]
		if q >= len(p.src) {
			return "", Pos{}, p.errf(start, "key %q has no value", key)
		}
		switch nc := p.src[q]; nc {
		case ' ', '\t', '=', ':':
		case '\n', '\r':
			return "", Pos{}, p.errf(q, "key %q is followed by the end of the line: the value (or '=' / ':') must start on the same line as the key", key)
		case '{', '[':
			return "", Pos{}, p.errf(q, "invalid character %s in key %q: put a space or '=' between the key and %s", p.describe(q), key, p.describe(q))
		default:
			return "", Pos{}, p.errf(q, "invalid character %s in key %q (a bare key holds letters, digits, '_', '-', '.' and '/'; quote other keys)", p.describe(q), key)
		}
		p.pos = q
	case c == '\'':
		return "", Pos{}, p.errf(start, "keys cannot be single-quoted: use double quotes")
	default:
		return "", Pos{}, p.errf(start, "unexpected %s: a key must begin with a letter, digit, '_', '/' or '\"'", p.describe(start))
	}
	if p.opts.LowercaseKeys {
		key = lowerASCII(key)
	}
	if p.direct {
		return key, Pos{}, nil
	}
	return key, p.posAt(start), nil
}

// parseSep skips the blanks, comments and at most one '=' or ':' between a
// key and its value, and reports whether a separator was seen.
func (p *parser) parseSep(keyOff int, key string) (bool, error) {
	sep := false
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == ' ' || c == '\t':
			p.pos++
		case c == '=' || c == ':':
			if sep {
				return false, p.errf(p.pos, "unexpected '%c': key %q already has a separator", c, key)
			}
			sep = true
			p.pos++
		case p.isCommentStart(p.pos):
			if c == '#' {
				p.skipLineComment()
			} else if err := p.skipBlockComment(); err != nil {
				return false, err
			}
		default:
			return sep, nil
		}
	}
	return false, p.errf(keyOff, "key %q has no value", key)
}

// scanNextKey decides, for a key without a separator, whether the rest of
// the line is more section names (a '{' or '[' comes before the end of the
// statement) rather than the value.
func (p *parser) scanNextKey() bool {
	t := p.pos
	n := len(p.src)
	for t < n && (p.src[t] == ' ' || p.src[t] == '\t') {
		t++
	}
	if t < n && (p.src[t] == '{' || p.src[t] == '[') {
		return false
	}
	// Keys of one statement scan to the same bracket; remembering it keeps
	// a long "a b c d ... {" line linear.
	if t < p.bracketAt && p.bracketFrom <= t {
		return true
	}
	from := t
	for ; t < n; t++ {
		switch p.src[t] {
		case ',', ';', '\n', '\r':
			return false
		case '{', '[':
			p.bracketFrom, p.bracketAt = from, t
			return true
		}
	}
	return false
}

// afterValue consumes what follows a value: blanks, comments and
// separators (newline, ';', ','), and the closing bracket of the enclosing
// container (closer, or -1 for the unbraced top level). sep says whether
// the value itself ended the statement (a closed object or array does).
func (p *parser) afterValue(sep bool, closer int) (bool, error) {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case ' ', '\t':
			p.pos++
		case '\n', '\r', ';', ',', 0:
			p.pos++
			sep = true
		case '#':
			p.skipLineComment()
			sep = true
		case '}', ']':
			if int(c) == closer {
				p.pos++
				return true, nil
			}
			if closer == -1 {
				return false, p.errf(p.pos, "unexpected '%c': there is no open bracket to close", c)
			}
			return false, p.errf(p.pos, "unexpected '%c': expected '%c' or another value", c, closer)
		case '/':
			if p.pos+1 < len(p.src) && p.src[p.pos+1] == '*' {
				if err := p.skipBlockComment(); err != nil {
					return false, err
				}
				sep = true
				continue
			}
			fallthrough
		default:
			if sep {
				return false, nil
			}
			return false, p.errf(p.pos, "unexpected %s after a value: separate values with a newline, ';' or ','", p.describe(p.pos))
		}
	}
	return false, nil
}

// ---- arrays

// parseArray parses [ ... ] at p.pos.
func (p *parser) parseArray() (*Node, error) {
	open := p.pos
	if p.depth++; p.depth > maxDepth {
		return nil, p.errf(open, "objects and arrays nested more than %d deep", maxDepth)
	}
	n := p.newNode(Array, open)
	p.pos++
	start := len(p.items)
	if p.direct {
		start = len(p.vitems)
	}
	for {
		if err := p.skipBlank(); err != nil {
			return nil, err
		}
		if p.pos >= len(p.src) {
			return nil, p.unterminated(open, "array", "the '[' has no matching ']'")
		}
		if p.src[p.pos] == ']' {
			p.pos++
			break
		}
		v, container, err := p.parseValue(-1, "")
		if err != nil {
			return nil, err
		}
		if p.direct {
			p.vitems = append(p.vitems, p.plain(v))
		} else {
			p.items = append(p.items, v)
		}
		closed, err := p.afterValue(container, ']')
		if err != nil {
			return nil, err
		}
		if closed {
			break
		}
		if p.pos >= len(p.src) {
			return nil, p.unterminated(open, "array", "the '[' has no matching ']'")
		}
	}
	p.finishArray(n, start)
	p.depth--
	return n, nil
}

// ---- values

// parseValue parses the value at p.pos (after blanks and comments). keyOff
// and key name the member it belongs to (keyOff < 0 inside arrays), for
// messages. container reports an object or array, which needs no separator
// after it.
func (p *parser) parseValue(keyOff int, key string) (v *Node, container bool, err error) {
	if err := p.skipBlank(); err != nil {
		return nil, false, err
	}
	start := p.pos
	if start >= len(p.src) {
		if keyOff >= 0 {
			return nil, false, p.errf(keyOff, "key %q has no value", key)
		}
		return nil, false, p.errf(start, "unexpected end of input: expected a value")
	}
	src := p.src
	switch c := src[start]; c {
	case '"':
		raw, end, esc, dollar, err := p.lexDQ(start)
		if err != nil {
			return nil, false, err
		}
		s := raw
		if esc {
			s = unescapeDQ(raw)
		}
		if dollar && p.expandVars {
			s = expand(s, p.vars)
		}
		n := p.newNode(String, start)
		n.Str = s
		p.pos = end
		return n, false, nil
	case '\'':
		raw, end, esc, err := p.lexSQ(start)
		if err != nil {
			return nil, false, err
		}
		n := p.newNode(String, start)
		n.Str = raw
		if esc {
			n.Str = unescapeSQ(raw)
		}
		p.pos = end
		return n, false, nil
	case '{':
		n, err := p.parseObject()
		return n, true, err
	case '[':
		n, err := p.parseArray()
		return n, true, err
	case '<':
		if n, ok, err := p.heredoc(start); ok || err != nil {
			return n, false, err
		}
	}
	if c := src[start]; isDigit(c) || c == '-' {
		r, st := lexNumber(src, start)
		switch st {
		case numOK:
			n := p.newNode(r.kind, start)
			n.Int, n.Float = r.i, r.f
			n.Str = src[start:r.textEnd]
			p.pos = r.end
			return n, false, nil
		case numRange:
			end := start
			for end < len(src) && !atomEnd(src[end]) && src[end] != ' ' && src[end] != '\t' {
				end++
			}
			return nil, false, p.errf(start, "number %s is out of range (integers must fit in 64 bits, floats in a double)", src[start:end])
		}
	}
	return p.unquoted(start, keyOff, key)
}

// unquoted reads a bare value: up to a newline, ';', ',', '#', "/*", or a
// ']' or '}' that closes something opened before the value.
func (p *parser) unquoted(start, keyOff int, key string) (*Node, bool, error) {
	src := p.src
	n := len(src)
	q := start
	var curlyO, curlyC, sqO, sqC int
	esc, dollar := false, false
scan:
	for q < n {
		c := src[q]
		switch c {
		case '{':
			curlyO++
		case '}':
			curlyC++
			if curlyC <= curlyO {
				q++
				continue
			}
			break scan
		case '[':
			sqO++
		case ']':
			sqC++
			if sqC <= sqO {
				q++
				continue
			}
			break scan
		case '$':
			dollar = true
		case '\\':
			esc = true
			q += 2
			if q > n {
				q = n
			}
			continue
		case 0, '\n', '\r', '#', ',', ';':
			break scan
		case '/':
			if q+1 < n && src[q+1] == '*' {
				break scan
			}
		}
		q++
	}
	end := q
	for end > start && (src[end-1] == ' ' || src[end-1] == '\t') {
		end--
	}
	if end == start {
		if keyOff >= 0 {
			return nil, false, p.errf(start, "missing value for key %q before %s", key, p.describe(start))
		}
		return nil, false, p.errf(start, "missing value before %s", p.describe(start))
	}
	raw := src[start:end]
	p.pos = q
	var node *Node
	switch {
	case raw == "null":
		node = p.newNode(Null, start)
	case raw == "nan":
		node = p.newNode(Float, start)
		node.Float = nan()
	case raw == "inf":
		node = p.newNode(Float, start)
		node.Float = inf()
	default:
		if b, ok := parseBool(raw); ok {
			node = p.newNode(Bool, start)
			node.Bool = b
		} else {
			node = p.newNode(String, start)
			s := raw
			if esc {
				s = unescapeDQ(raw)
			}
			if dollar && p.expandVars {
				s = expand(s, p.vars)
			}
			node.Str = s
			return node, false, nil
		}
	}
	node.Str = raw
	return node, false, nil
}

func parseBool(s string) (bool, bool) {
	if len(s) < 2 || len(s) > 5 {
		return false, false
	}
	switch {
	case strings.EqualFold(s, "true"), strings.EqualFold(s, "yes"), strings.EqualFold(s, "on"):
		return true, true
	case strings.EqualFold(s, "false"), strings.EqualFold(s, "no"), strings.EqualFold(s, "off"):
		return false, true
	}
	return false, false
}

// lexDQ scans a double-quoted string whose quote is at open. It returns the
// raw text between the quotes, the offset after the closing quote and
// whether the text has escapes or '$'.
func (p *parser) lexDQ(open int) (raw string, end int, esc, dollar bool, err error) {
	src := p.src
	n := len(src)
	q := open + 1
	for q < n {
		c := src[q]
		switch {
		case c == '"':
			return src[open+1 : q], q + 1, esc, dollar, nil
		case c == '\\':
			esc = true
			q++
			if q >= n {
				return "", 0, false, false, p.unterminated(open, "string", "the '\"' has no closing quote")
			}
			if src[q] == 'u' {
				q++
				for i := 0; i < 4 && q < n; i++ {
					if hexVal(src[q]) < 0 {
						return "", 0, false, false, p.errf(q, "invalid \\u escape: expected 4 hex digits, found %s", p.describe(q))
					}
					q++
				}
				if q >= n {
					return "", 0, false, false, p.unterminated(open, "string", "the '\"' has no closing quote")
				}
			} else if src[q] >= 0x1f {
				q++
			}
		case c < 0x1f:
			if c == '\n' || c == '\r' {
				return "", 0, false, false, p.unterminated(open, "string", "the line ends before the closing '\"' (write a line break as \\n, or use a <<EOD heredoc)")
			}
			return "", 0, false, false, p.errf(q, "%s inside a quoted string: write it as an escape such as \\t or \\u00XX", p.describe(q))
		default:
			if c == '$' {
				dollar = true
			}
			q++
		}
	}
	return "", 0, false, false, p.unterminated(open, "string", "the '\"' has no closing quote")
}

// lexSQ scans a single-quoted string whose quote is at open.
func (p *parser) lexSQ(open int) (raw string, end int, esc bool, err error) {
	src := p.src
	n := len(src)
	for q := open + 1; q < n; q++ {
		switch src[q] {
		case '\\':
			esc = true
			q++
			if q >= n {
				return "", 0, false, p.unterminated(open, "string", "the \"'\" has no closing quote")
			}
		case '\'':
			return src[open+1 : q], q + 1, esc, nil
		}
	}
	return "", 0, false, p.unterminated(open, "string", "the \"'\" has no closing quote")
}

// heredoc reads <<TAG ... TAG at start. ok is false when the text is not a
// heredoc opener (then it is an ordinary string).
func (p *parser) heredoc(start int) (*Node, bool, error) {
	src := p.src
	n := len(src)
	if n-start <= 3 || src[start+1] != '<' {
		return nil, false, nil
	}
	t := start + 2
	for t < n && src[t] >= 'A' && src[t] <= 'Z' {
		t++
	}
	if t == start+2 || t >= n || src[t] != '\n' {
		return nil, false, nil
	}
	tag := src[start+2 : t]
	body := t + 1
	newline := false
	for q := body; q < n; q++ {
		if newline {
			if n-q < len(tag) {
				break
			}
			if src[q:q+len(tag)] == tag {
				e := q + len(tag)
				if e == n || src[e] == '\n' || src[e] == ';' || src[e] == ',' {
					node := p.newNode(String, start)
					s := src[body : q-1]
					if p.expandVars {
						s = expand(s, p.vars)
					}
					node.Str = s
					p.pos = e
					return node, true, nil
				}
			}
		}
		newline = src[q] == '\n'
	}
	return nil, true, p.unterminated(start, "heredoc", fmt.Sprintf("no line holding just %q follows <<%s (an empty heredoc needs one blank line)", tag, tag))
}
