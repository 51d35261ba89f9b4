package ucl

import (
	"strings"
	"unicode/utf8"
)

// unescapeDQ resolves backslash escapes the way libucl does for double-quoted
// and unquoted strings: JSON escapes are honoured, an unknown escape drops
// the backslash (\q is q), and a trailing lone backslash is kept.
func unescapeDQ(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			b.WriteByte('\\')
			break
		}
		i++
		switch c = s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				b.WriteByte('u')
				continue
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 {
				// A high surrogate: combine it with a following low one.
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if r2, ok := hex4(s, i+3); ok && r2 >= 0xDC00 && r2 < 0xE000 {
						r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
						i += 6
					}
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for j := i; j < i+4; j++ {
		d := hexVal(s[j])
		if d < 0 {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// unescapeSQ resolves the two escapes of single-quoted strings: \' is a
// quote and a backslash before a line break removes both. Every other
// backslash is kept as written.
func unescapeSQ(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case '\'':
			b.WriteByte('\'')
		case '\n':
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// lowerASCII lowercases ASCII letters, as libucl does for
// UCL_PARSER_KEY_LOWERCASE; it returns s itself when nothing changes.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// expand replaces variable references in s. ${NAME} must name a variable
// exactly; $NAME takes the longest variable name that the text starts with
// (so $ABItest is $ABI followed by "test"). Unknown references stay as
// written. As in libucl, $$ becomes $ only in a string that refers to at
// least one known variable; a string without any is returned unchanged.
func expand(s string, vars map[string]string) string {
	if strings.IndexByte(s, '$') < 0 || len(vars) == 0 {
		return s
	}
	found := false
	for i := 0; i < len(s) && !found; i++ {
		if s[i] != '$' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			i++
			continue
		}
		if _, _, ok := lookupVar(s[i+1:], vars); ok {
			found = true
		}
	}
	if !found {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		rest := s[i+1:]
		if len(rest) > 0 && rest[0] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if val, n, ok := lookupVar(rest, vars); ok {
			b.WriteString(val)
			i += n
			continue
		}
		b.WriteByte('$')
	}
	return b.String()
}

// lookupVar resolves the reference at the start of rest (the text after a
// '$'). It returns the value and how many bytes of rest the reference used.
func lookupVar(rest string, vars map[string]string) (string, int, bool) {
	if len(rest) > 0 && rest[0] == '{' {
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", 0, false
		}
		v, ok := vars[rest[1:end]]
		return v, end + 1, ok
	}
	best := -1
	var val string
	for name, v := range vars {
		if len(name) > best && len(name) > 0 && strings.HasPrefix(rest, name) {
			best, val = len(name), v
		}
	}
	if best < 0 {
		return "", 0, false
	}
	return val, best, true
}
