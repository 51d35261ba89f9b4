//go:build linux

package process

import (
	"encoding/binary"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// procMsg builds a proc connector datagram: one netlink message holding
// an event of kind what with data.
func procMsg(what, ack uint32, data ...uint32) []byte {
	ne := binary.NativeEndian
	b := make([]byte, procEventOff+procEventHdrLen+24)
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], 3)
	ne.PutUint32(b[nlmsgHdrLen:], cnIdxProc)
	ne.PutUint32(b[nlmsgHdrLen+4:], cnValProc)
	ne.PutUint32(b[nlmsgHdrLen+12:], ack)
	ne.PutUint32(b[procEventOff:], what)
	for i, v := range data {
		ne.PutUint32(b[procEventOff+procEventHdrLen+4*i:], v)
	}
	return b
}

func TestConnectorMessages(t *testing.T) {
	c := &exitCodes{watched: map[int]*exitRecord{}}
	c.watched[100] = &exitRecord{refs: 1, seenC: make(chan struct{})}
	c.watched[200] = &exitRecord{refs: 1, seenC: make(chan struct{})}
	// A thread of 100 ends with 0, then the whole process with exit 3
	// (wait status 3<<8); 200 dies of SIGSEGV; 300 is not watched. Two
	// messages in one datagram are both read.
	c.recordLocked(append(procMsg(procEventExit, 0, 101, 100, 0, 0), procMsg(procEventExit, 0, 100, 100, 3<<8, 17)...))
	c.recordLocked(procMsg(procEventExit, 0, 200, 200, uint32(syscall.SIGSEGV), 17))
	c.recordLocked(procMsg(procEventExit, 0, 300, 300, 1<<8, 17))
	c.recordLocked(procMsg(1 /* fork */, 0, 1, 1, 100, 100))
	c.recordLocked([]byte{1, 2, 3}) // short: ignored
	if _, ok := c.watched[300]; ok {
		t.Error("an unwatched process was recorded")
	}
	if s := statusOf(c.watched[100].ws); !s.Known || s.Code != 3 {
		t.Errorf("process 100: %+v, want exit 3", s)
	}
	if s := statusOf(c.watched[200].ws); !s.Known || s.Signal != syscall.SIGSEGV {
		t.Errorf("process 200: %+v, want SIGSEGV", s)
	}

	// take drains the socket (here an empty stand-in) and answers.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	c.fd, c.buf = fds[0], make([]byte, 1024)
	c.watched[100].refs++ // attached twice
	if s := c.take(100); s.Code != 3 || !s.Known {
		t.Errorf("take(100) = %+v, want exit 3", s)
	}
	if s := c.take(100); s.Code != 3 || !s.Known {
		t.Errorf("second take(100) = %+v, want exit 3", s)
	}
	if _, ok := c.watched[100]; ok {
		t.Error("process 100 still watched after both takes")
	}
	c.watched[200].lost = true
	if s := c.take(200); s.Known || !strings.Contains(s.Why, "lost") {
		t.Errorf("take(200) after lost events = %+v, want unknown", s)
	}

	// An exit seen (its pidfd) before its event arrived: take waits for
	// the event, which another reader of the socket records.
	c.watched[400] = &exitRecord{refs: 1, seenC: make(chan struct{})}
	go func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.recordLocked(procMsg(procEventExit, 0, 400, 400, 7<<8, 17))
	}()
	if s := c.take(400); s.Code != 7 || !s.Known {
		t.Errorf("take(400) of an event that came late = %+v, want exit 7", s)
	}

	if errno, ok := ackOf(procMsg(procEventNone, 8, 0), 8); !ok || errno != 0 {
		t.Errorf("ack: %d %v, want 0 true", errno, ok)
	}
	if errno, ok := ackOf(procMsg(procEventNone, 8, uint32(syscall.EPERM)), 8); !ok || errno != uint32(syscall.EPERM) {
		t.Errorf("refusal: %d %v, want EPERM", errno, ok)
	}
	if _, ok := ackOf(procMsg(procEventNone, 5, 0), 8); ok {
		t.Error("another listener's ack taken for ours")
	}
	if _, ok := ackOf(procMsg(procEventExit, 8, 1, 1), 8); ok {
		t.Error("an exit event taken for the ack")
	}
}
