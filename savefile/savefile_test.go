package savefile

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Name: "web", Hypervisor: "qemu", SavedBy: "qemu 7.2.22", ConfigDigest: "abc", Time: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)}
	var b bytes.Buffer
	if err := Write(&b, h); err != nil {
		t.Fatal(err)
	}
	if int64(b.Len()) != Size(h) {
		t.Errorf("Size %d, wrote %d", Size(h), b.Len())
	}
	b.WriteString("STATE")
	got, err := Read(&b)
	h.Version = Version
	if err != nil || got != h {
		t.Fatalf("Read: %+v, %v", got, err)
	}
	if rest := b.String(); rest != "STATE" {
		t.Errorf("Read left %q", rest)
	}
}

func TestHeaderRefused(t *testing.T) {
	var whole bytes.Buffer
	Write(&whole, Header{Name: "web", Hypervisor: "qemu"})
	for name, in := range map[string]string{
		"empty":     "",
		"other":     "QEVM\x00\x00\x00\x03 some other file format",
		"truncated": whole.String()[:whole.Len()-3],
		"huge":      Magic + "\xff\xff\xff\xff",
		"no name":   Magic + "\x00\x00\x00\x0d{\"version\":1}",
	} {
		_, err := Read(strings.NewReader(in))
		if !errors.Is(err, ErrNotSaveFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifier(t *testing.T) {
	data := bytes.Repeat([]byte("guest state "), 10000)
	sum := sha256.Sum256(data)
	stream := append(append([]byte(nil), data...), Trailer(int64(len(data)), sum[:])...)

	var out bytes.Buffer
	v := NewVerifier(&out)
	for i := 0; i < len(stream); i += 777 {
		v.Write(stream[i:min(i+777, len(stream))])
	}
	if err := v.Check(); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("whole stream: %v, %d bytes passed", err, out.Len())
	}

	for name, bad := range map[string][]byte{
		"truncated":     stream[:len(stream)/2],
		"no trailer":    data,
		"damaged":       append([]byte("X"), stream[1:]...),
		"short trailer": stream[:len(stream)-1],
	} {
		v := NewVerifier(&bytes.Buffer{})
		v.Write(bad)
		if err := v.Check(); err == nil {
			t.Errorf("%s stream accepted", name)
		} else if !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
