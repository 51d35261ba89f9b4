// Package savefile holds the layout of a saved guest: a small versioned
// header, then the hypervisor's own state stream. The same bytes are the
// file a suspend leaves in the state directory and the stream that send
// writes and receive reads, so that what one host saved another can check
// before it restores anything.
package savefile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Magic opens every saved guest.
const Magic = "vmstated-save\n"

// Version is the header layout this package writes and reads.
const Version = 1

// maxHeader bounds the JSON part of a header, so that a damaged length
// cannot make a reader allocate without bound.
const maxHeader = 64 << 10

// ErrNotSaveFile is matched by the error of a stream that does not start
// with a header of this package.
var ErrNotSaveFile = errors.New("not a saved guest")

// Header describes the saved guest that follows it.
type Header struct {
	Version int `json:"version"`
	// Name is the VM's name.
	Name string `json:"name"`
	// Hypervisor is the driver that saved the state ("qemu"); SavedBy
	// names it with its version ("qemu 7.2.22").
	Hypervisor string `json:"hypervisor"`
	SavedBy    string `json:"saved_by"`
	// ConfigDigest identifies the config the VM ran with; a VM whose
	// config differs may not be able to load the state.
	ConfigDigest string    `json:"config_digest"`
	Time         time.Time `json:"time"`
}

// Write writes h (with the current Version) to w.
func Write(w io.Writer, h Header) error {
	h.Version = Version
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(Magic)+4+len(data))
	buf = append(buf, Magic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	buf = append(buf, data...)
	_, err = w.Write(buf)
	return err
}

// Size returns how many bytes Write writes for h.
func Size(h Header) int64 {
	h.Version = Version
	data, _ := json.Marshal(h)
	return int64(len(Magic) + 4 + len(data))
}

// Read reads a header from r and leaves r just after it (it reads no
// further, so that r can be handed on to the hypervisor).
func Read(r io.Reader) (Header, error) {
	var h Header
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return h, fmt.Errorf("%w: %s", ErrNotSaveFile, shortRead(err))
	}
	if string(magic) != Magic {
		return h, fmt.Errorf("%w: it does not begin with %q", ErrNotSaveFile, Magic[:len(Magic)-1])
	}
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return h, fmt.Errorf("%w: header %s", ErrNotSaveFile, shortRead(err))
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > maxHeader {
		return h, fmt.Errorf("%w: header length %d is out of range (1 to %d)", ErrNotSaveFile, size, maxHeader)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return h, fmt.Errorf("%w: header %s", ErrNotSaveFile, shortRead(err))
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrNotSaveFile, err)
	}
	if h.Version != Version {
		return h, fmt.Errorf("header version %d: this daemon reads version %d; restore it with the version of vmstated that saved it", h.Version, Version)
	}
	if h.Name == "" || h.Hypervisor == "" {
		return h, fmt.Errorf("%w: header names no VM or hypervisor", ErrNotSaveFile)
	}
	return h, nil
}

func shortRead(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated"
	}
	return err.Error()
}

// A stream that send writes ends with a trailer: the number of bytes
// before it and their SHA-256, so that a receiver tells a stream cut
// short or damaged from a whole one before it restores anything. A file
// in the state directory has no trailer: it is renamed into place only
// once whole.
const trailerMagic = "vmstated-end\n"

// TrailerSize is the length of a trailer.
const TrailerSize = len(trailerMagic) + 8 + sha256.Size

// Trailer returns the trailer of n bytes whose SHA-256 is sum.
func Trailer(n int64, sum []byte) []byte {
	b := append([]byte(trailerMagic), binary.BigEndian.AppendUint64(nil, uint64(n))...)
	return append(b, sum...)
}

// CheckTrailer reports whether t is the trailer of n bytes whose SHA-256
// is sum.
func CheckTrailer(t []byte, n int64, sum []byte) error {
	if len(t) != TrailerSize || string(t[:len(trailerMagic)]) != trailerMagic {
		return fmt.Errorf("the stream is truncated or damaged: it does not end with the sender's end mark (%d bytes arrived)", n+int64(len(t)))
	}
	if got := int64(binary.BigEndian.Uint64(t[len(trailerMagic):])); got != n {
		return fmt.Errorf("the stream is truncated or damaged: %d bytes arrived, the sender wrote %d", n, got)
	}
	if !bytes.Equal(t[len(trailerMagic)+8:], sum) {
		return fmt.Errorf("the stream is damaged: its checksum does not match what the sender wrote")
	}
	return nil
}

// Verifier passes a stream through, hashing it, and holds back what may
// be its trailer: Check, once the stream has ended, says whether it
// arrived whole.
type Verifier struct {
	w    io.Writer
	h    hash.Hash
	n    int64
	tail []byte
}

// NewVerifier returns a Verifier that writes the stream, trailer removed,
// to w.
func NewVerifier(w io.Writer) *Verifier { return &Verifier{w: w, h: sha256.New()} }

// Write passes on all but the last TrailerSize bytes seen so far.
func (v *Verifier) Write(p []byte) (int, error) {
	v.tail = append(v.tail, p...)
	if over := len(v.tail) - TrailerSize; over > 0 {
		out := v.tail[:over]
		if _, err := v.w.Write(out); err != nil {
			return 0, err
		}
		v.h.Write(out)
		v.n += int64(over)
		v.tail = append(v.tail[:0], v.tail[over:]...)
	}
	return len(p), nil
}

// Check reports whether the stream ended with its own trailer.
func (v *Verifier) Check() error { return CheckTrailer(v.tail, v.n, v.h.Sum(nil)) }
