package ucl

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// macro runs the macro whose '.' is at p.pos, in the object b.
func (p *parser) macro(b *objb) error {
	start := p.pos
	q := start + 1
	src := p.src
	for q < len(src) && !isBlankByte(src[q]) && src[q] != '(' {
		q++
	}
	name := src[start+1 : q]
	p.pos = q
	switch name {
	case "include", "try_include", "priority":
	case "":
		return p.errf(start, "missing macro name after '.'")
	case "includes", "inherit", "load":
		return p.errf(start, "macro .%s is not supported (supported: .include, .try_include, .priority)", name)
	default:
		return p.errf(start, "unknown macro .%s (supported: .include, .try_include, .priority)", name)
	}
	if err := p.skipInline(); err != nil {
		return err
	}
	var args *Node
	if p.pos < len(src) && src[p.pos] == '(' {
		a, err := p.macroArgs(name)
		if err != nil {
			return err
		}
		args = a
		if err := p.skipInline(); err != nil {
			return err
		}
	}
	if p.pos >= len(src) || src[p.pos] == '\n' || src[p.pos] == '\r' || src[p.pos] == ';' || src[p.pos] == '#' {
		// No value: only .priority(priority=N) can do without one.
		if name != "priority" || args == nil {
			return p.errf(start, "macro .%s needs a value on the same line", name)
		}
		for p.pos < len(src) && (isBlankByte(src[p.pos]) || src[p.pos] == ';') {
			p.pos++
		}
		return p.setPriority(start, p.pos, "", args)
	}
	valOff := p.pos
	var val string
	switch src[p.pos] {
	case '"':
		raw, end, esc, _, err := p.lexDQ(p.pos)
		if err != nil {
			return err
		}
		val = raw
		if esc {
			val = unescapeDQ(raw)
		}
		p.pos = end
	case '{':
		e := strings.IndexByte(src[p.pos:], '}')
		if e < 0 {
			return p.errf(p.pos, "unterminated macro body: the '{' here has no matching '}'")
		}
		val = strings.TrimSpace(src[p.pos+1 : p.pos+e])
		p.pos += e + 1
	default:
		e := p.pos
		for e < len(src) && !atomEnd(src[e]) {
			e++
		}
		val = strings.TrimRight(src[p.pos:e], " \t")
		p.pos = e
	}
	for p.pos < len(src) && (isBlankByte(src[p.pos]) || src[p.pos] == ';') {
		p.pos++
	}
	if p.expandVars {
		val = expand(val, p.vars)
	}
	if name == "priority" {
		return p.setPriority(start, valOff, val, args)
	}
	return p.include(b, start, val, name == "try_include", args)
}

// skipInline skips spaces, tabs and /* */ comments, but not line breaks:
// a macro's arguments and value are on its line.
func (p *parser) skipInline() error {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t':
			p.pos++
		case c == '/' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '*':
			if err := p.skipBlockComment(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func isBlankByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// macroArgs parses "( ... )" at p.pos as a UCL object.
func (p *parser) macroArgs(name string) (*Node, error) {
	open := p.pos
	src := p.src
	depth := 0
	quoted := false
	for q := open; q < len(src); q++ {
		c := src[q]
		if quoted {
			if c == '\\' {
				q++
			} else if c == '"' {
				quoted = false
			}
			continue
		}
		switch c {
		case '"':
			quoted = true
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				text := src[open+1 : q]
				args, err := Parse([]byte(text), Options{})
				if err != nil {
					var pe *ParseError
					msg := err.Error()
					if errors.As(err, &pe) {
						msg = pe.Msg
					}
					return nil, p.errf(open, "bad arguments for .%s: %s", name, msg)
				}
				if args.Kind != Object {
					return nil, p.errf(open, "bad arguments for .%s: expected name=value pairs", name)
				}
				p.pos = q + 1
				return args, nil
			}
		}
	}
	return nil, p.errf(open, "unterminated arguments for .%s: the '(' here has no matching ')'", name)
}

// prioArg reads a priority (0-15) from a node.
func (p *parser) prioArg(v *Node, off int) (uint8, error) {
	if v.Kind != Int || v.Int < 0 || v.Int > 15 {
		return 0, p.errf(off, "priority must be an integer from 0 to 15, not %s", v.Str)
	}
	return uint8(v.Int), nil
}

// setPriority runs .priority: later keys of this file get the priority.
func (p *parser) setPriority(start, valOff int, val string, args *Node) error {
	if args != nil {
		for _, f := range args.Fields {
			if f.Key != "priority" {
				return p.errf(start, "unknown parameter %q for .priority", f.Key)
			}
			pr, err := p.prioArg(f.Value, start)
			if err != nil {
				return err
			}
			p.prio = pr
		}
		if val == "" {
			return nil
		}
	}
	r, st := lexNumber(val, 0)
	if val == "" || (val[0] != '-' && !isDigit(val[0])) || st != numOK || r.kind != Int || r.textEnd != len(val) {
		return p.errf(valOff, "priority must be an integer from 0 to 15, not %q", val)
	}
	pr, err := p.prioArg(&Node{Kind: Int, Int: r.i, Str: val}, valOff)
	if err != nil {
		return err
	}
	p.prio = pr
	return nil
}

// include runs .include / .try_include: the keys of the included file (or
// files, with glob=true) are added to b.
func (p *parser) include(b *objb, site int, path string, try bool, args *Node) error {
	glob := false
	prio := p.prio
	if args != nil {
		for _, f := range args.Fields {
			v := f.Value
			switch f.Key {
			case "try", "glob":
				if v.Kind != Bool {
					return p.errf(site, ".include parameter %s must be true or false, not %s", f.Key, v.Str)
				}
				if f.Key == "try" {
					try = v.Bool
				} else {
					glob = v.Bool
				}
			case "priority":
				pr, err := p.prioArg(v, site)
				if err != nil {
					return err
				}
				prio = pr
			default:
				return p.errf(site, "unknown .include parameter %q (supported: try, glob, priority)", f.Key)
			}
		}
	}
	if path == "" {
		return p.errf(site, ".include needs a file name")
	}
	if !filepath.IsAbs(path) && p.file != "" {
		path = filepath.Join(filepath.Dir(p.file), path)
	}
	if !glob {
		return p.includeFile(b, site, path, try, prio)
	}
	globf := p.opts.Glob
	if globf == nil {
		globf = filepath.Glob
	}
	matches, err := globf(path)
	if err != nil {
		pe := p.errf(site, ".include: bad pattern %q: %v", path, err)
		pe.err = err
		return pe
	}
	if len(matches) == 0 {
		if try {
			return nil
		}
		return p.errf(site, ".include: no file matches %q (use .include(glob=true,try=true) if that is fine)", path)
	}
	sort.Strings(matches)
	for _, m := range matches {
		if err := p.includeFile(b, site, m, false, prio); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) includeFile(b *objb, site int, path string, try bool, prio uint8) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	for i, c := range p.chain {
		if c == abs {
			names := append(append([]string(nil), p.chain[i:]...), abs)
			pe := p.errf(site, "include loop: %s", strings.Join(names, " -> "))
			pe.err = ErrIncludeLoop
			return pe
		}
	}
	if len(p.from) >= maxIncludeDepth {
		return p.errf(site, "includes nested more than %d deep", maxIncludeDepth)
	}
	read := p.opts.ReadFile
	if read == nil {
		read = readRegular
	}
	data, err := read(path)
	if err != nil {
		if try && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		pe := p.errf(site, ".include: %v", err)
		pe.err = err
		return pe
	}
	sitePos := p.posAt(site)

	// Parse the file in this parser, so its keys land in b, then restore
	// the state of the including file.
	saved := *p
	p.from = append([]Pos{sitePos}, p.from...)
	p.chain = append(p.chain[:len(p.chain):len(p.chain)], abs)
	p.prio = prio
	p.setSource(string(data), path)
	err = p.parseIncluded(b)
	// Keep the allocation state; restore the reading state.
	saved.nodes, saved.fslab, saved.islab, saved.fields, saved.items = p.nodes, p.fslab, p.islab, p.fields, p.items
	*p = saved
	if p.expandVars {
		p.setFileVars()
	}
	return err
}

// setFileVars restores FILENAME and CURDIR for the current file.
func (p *parser) setFileVars() {
	src, pos, off, line, col := p.src, p.pos, p.curOff, p.curLine, p.curCol
	p.setSource(src, p.file)
	p.pos, p.curOff, p.curLine, p.curCol = pos, off, line, col
}

func (p *parser) parseIncluded(b *objb) error {
	if err := p.skipBlank(); err != nil {
		return err
	}
	if p.pos < len(p.src) && p.src[p.pos] == '[' {
		return p.errf(p.pos, "an included file must hold keys (an object), not an array")
	}
	return p.parseDocInto(b)
}
