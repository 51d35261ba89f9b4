package console

import "bytes"

// ring keeps the last bytes written to it, for replay. Its buffer grows
// with what is written, up to the ring's size, and wraps from then on: a
// VM whose console never writes (an exec VM without a terminal, a QEMU
// guest with serial = false) costs nothing.
type ring struct {
	size int
	buf  []byte // valid: buf[:next] until full, all of it after
	full bool
	next int
}

func newRing(size int) *ring { return &ring{size: size} }

func (r *ring) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	if len(r.buf) < r.size {
		if len(r.buf)+len(p) < r.size {
			r.buf = append(r.buf, p...)
			r.next = len(r.buf)
			return
		}
		// Full size from now on.
		b := make([]byte, r.size)
		r.next = copy(b, r.buf)
		r.buf = b
	}
	if len(p) >= len(r.buf) {
		copy(r.buf, p[len(p)-len(r.buf):])
		r.next, r.full = 0, true
		return
	}
	n := copy(r.buf[r.next:], p)
	if n < len(p) {
		copy(r.buf, p[n:])
		r.full = true
	}
	r.next = (r.next + len(p)) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// bytes returns what the ring holds, oldest first.
func (r *ring) bytes() []byte {
	if !r.full {
		return append([]byte(nil), r.buf[:r.next]...)
	}
	return append(append([]byte(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// lastLines returns the last n lines the ring holds (the line being
// written counts as one), all of them for n < 0. When the ring has
// wrapped, its oldest, partial line is left out.
func (r *ring) lastLines(n int) []byte {
	b := r.bytes()
	if r.full {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if n < 0 {
		return b
	}
	if n == 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // a complete last line is not the start of another
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

func (r *ring) reset() {
	r.next, r.full = 0, false
	if len(r.buf) < r.size {
		r.buf = r.buf[:0]
	}
}
