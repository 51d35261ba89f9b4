package ucl

import (
	"math"
	"strconv"
)

// numResult is a number read from the source.
type numResult struct {
	kind    Kind // Int, Float or Time
	i       int64
	f       float64
	textEnd int // end of the number's text (suffix included)
	end     int // where parsing goes on (after trailing blanks before a terminator)
}

// numStatus says what lexNumber found.
type numStatus uint8

const (
	numOK    numStatus = iota
	numNot             // not a number: read the value as a string instead
	numRange           // a number that does not fit (integer overflow, float overflow)
)

// atomEnd reports whether c ends a number or an unquoted value.
func atomEnd(c byte) bool {
	switch c {
	case 0, '\n', '\r', '#', ',', ';', ']', '}':
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decimal and binary size multipliers for k, m, g.
func sizeMult(c byte, binary bool) int64 {
	switch c | 0x20 {
	case 'k':
		if binary {
			return 1 << 10
		}
		return 1000
	case 'm':
		if binary {
			return 1 << 20
		}
		return 1000 * 1000
	case 'g':
		if binary {
			return 1 << 30
		}
		return 1000 * 1000 * 1000
	}
	return 1
}

func timeMult(c byte) float64 {
	switch c | 0x20 {
	case 'h':
		return 3600
	case 'd':
		return 86400
	case 'w':
		return 7 * 86400
	case 'y':
		return 365 * 86400
	}
	return 1
}

// lexNumber reads a number that starts at src[start] (a digit or '-'),
// following libucl's rules: an optional '-', decimal digits with an optional
// fraction and exponent, or 0x hex digits; then an optional size or time
// suffix. The number (with its suffix) must be followed directly by a
// terminator, or by blanks and a terminator when it has no suffix;
// otherwise the value is a string.
func lexNumber(src string, start int) (numResult, numStatus) {
	var r numResult
	n := len(src)
	p := start
	neg := false
	if src[p] == '-' {
		neg = true
		p++
	}
	c := p
	isFloat := false
	var e int // end of the digits, like strtod/strtoimax's endptr
	if p+1 < n && src[p] == '0' && src[p+1]|0x20 == 'x' {
		q := p + 2
		var mag uint64
		for q < n {
			d := hexVal(src[q])
			if d < 0 {
				break
			}
			if mag > (math.MaxInt64-uint64(d))/16 {
				return r, numRange
			}
			mag = mag*16 + uint64(d)
			q++
		}
		if q == p+2 {
			return r, numNot
		}
		r.i = int64(mag)
		if neg {
			r.i = -r.i
		}
		e = q
	} else {
		q := p
		gotDot, gotExp := false, false
		for q < n {
			ch := src[q]
			if isDigit(ch) {
				q++
				continue
			}
			if q == c {
				return r, numNot
			}
			if ch == '.' {
				if gotDot {
					return r, numNot
				}
				gotDot = true
				q++
				continue
			}
			if ch == 'e' || ch == 'E' {
				if gotExp {
					return r, numNot
				}
				gotExp = true
				q++
				if q >= n || !(isDigit(src[q]) || src[q] == '+' || src[q] == '-') {
					return r, numNot
				}
				q++
				continue
			}
			break
		}
		if q == c {
			return r, numNot
		}
		if gotDot || gotExp {
			isFloat = true
			e = c
			for e < n && isDigit(src[e]) {
				e++
			}
			if e < n && src[e] == '.' {
				e++
				for e < n && isDigit(src[e]) {
					e++
				}
			}
			if e < n && src[e]|0x20 == 'e' {
				t := e + 1
				if t < n && (src[t] == '+' || src[t] == '-') {
					t++
				}
				if t < n && isDigit(src[t]) {
					for t < n && isDigit(src[t]) {
						t++
					}
					e = t
				}
			}
			f, err := strconv.ParseFloat(src[start:e], 64)
			if err != nil {
				if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
					return r, numRange
				}
				return r, numNot
			}
			r.f = f
		} else {
			e = q
			iv, err := parseDecInt(src[start:e])
			if err {
				return r, numRange
			}
			r.i = iv
		}
	}

	if isFloat {
		r.kind = Float
	} else {
		r.kind = Int
	}
	if e == n || atomEnd(src[e]) {
		r.textEnd, r.end = e, e
		return r, numOK
	}
	ch := src[e]
	if ch == ' ' || ch == '\t' {
		t := e
		for t < n && (src[t] == ' ' || src[t] == '\t') {
			t++
		}
		if t == n || atomEnd(src[t]) {
			r.textEnd, r.end = e, t
			return r, numOK
		}
		return r, numNot
	}
	// asFloat is the number as a float, for time values.
	asFloat := r.f
	if !isFloat {
		asFloat = float64(r.i)
	}
	sfx := e
	switch ch | 0x20 {
	case 'k', 'm', 'g':
		if n-e >= 2 {
			nx := src[e+1]
			switch {
			case nx == 's' || nx == 'S':
				r.kind = Time
				if ch|0x20 == 'm' {
					r.f = asFloat / 1000
				} else {
					r.f = asFloat * float64(sizeMult(ch, false))
				}
				sfx = e + 2
			case nx == 'b' || nx == 'B':
				m := sizeMult(ch, true)
				if isFloat {
					v := r.f * float64(m)
					if math.IsNaN(v) || v >= 1<<63 || v < -(1<<63) {
						return r, numRange
					}
					r.i = int64(v)
					r.kind = Int
				} else if !mulOK(r.i, m) {
					return r, numRange
				} else {
					r.i *= m
				}
				sfx = e + 2
			case atomEnd(nx):
				if !multiply(&r, isFloat, sizeMult(ch, false)) {
					return r, numRange
				}
				sfx = e + 1
			case n-e >= 3 && ch|0x20 == 'm' && nx|0x20 == 'i' && src[e+2]|0x20 == 'n':
				r.kind = Time
				r.f = asFloat * 60
				sfx = e + 3
			default:
				return r, numNot
			}
		} else {
			if !multiply(&r, isFloat, sizeMult(ch, false)) {
				return r, numRange
			}
			sfx = e + 1
		}
	case 's', 'h', 'd', 'w', 'y':
		if e+1 < n && !atomEnd(src[e+1]) {
			return r, numNot
		}
		r.kind = Time
		r.f = asFloat * timeMult(ch)
		sfx = e + 1
	default:
		return r, numNot
	}
	if sfx < n && !atomEnd(src[sfx]) {
		return r, numNot
	}
	if r.kind == Time && (math.IsInf(r.f, 0)) {
		return r, numRange
	}
	r.textEnd, r.end = sfx, sfx
	return r, numOK
}

func mulOK(a, m int64) bool {
	if a == 0 || m == 1 {
		return true
	}
	return a <= math.MaxInt64/m && a >= math.MinInt64/m
}

func multiply(r *numResult, isFloat bool, m int64) bool {
	if isFloat {
		r.f *= float64(m)
		return !math.IsInf(r.f, 0)
	}
	if !mulOK(r.i, m) {
		return false
	}
	r.i *= m
	return true
}

// parseDecInt parses an optionally negative run of decimal digits; it
// reports overflow of int64.
func parseDecInt(s string) (int64, bool) {
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	var u uint64
	for i := 0; i < len(s); i++ {
		d := uint64(s[i] - '0')
		if u > (math.MaxUint64-d)/10 {
			return 0, true
		}
		u = u*10 + d
	}
	if neg {
		if u > 1<<63 {
			return 0, true
		}
		return -int64(u), false
	}
	if u > math.MaxInt64 {
		return 0, true
	}
	return int64(u), false
}
