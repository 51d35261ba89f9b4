//go:build linux

package process

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// codes learns the exit status of processes that are not the daemon's
// children (re-adopted after a restart), which wait(2) cannot report. The
// kernel's proc connector (netlink) announces every exit on the host with
// its status. It answers only processes in the initial user and pid
// namespaces, and before Linux 6.6 only root (CAP_NET_ADMIN). One socket
// serves the daemon; a BPF filter keeps only exit events so that the rest
// of the host's process churn costs nothing.
//
// The kernel sends a process's exit event before its pidfd becomes
// readable, so once the exit poller reports the exit, the event is queued
// on the socket: take drains the socket before it answers.
var codes exitCodes

// The proc connector's protocol (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc          = 1
	cnValProc          = 1
	procCnMcastListen  = 1
	procEventNone      = 0x00000000
	procEventExit      = 0x80000000
	nlmsgHdrLen        = 16 // struct nlmsghdr
	cnMsgLen           = 20 // struct cn_msg
	procEventHdrLen    = 16 // what, cpu, timestamp_ns
	procEventOff       = nlmsgHdrLen + cnMsgLen
	exitEventLen       = procEventHdrLen + 24 // struct exit_proc_event
	connectorRcvBuffer = 4 << 20
	// ackWait bounds the wait for the kernel to confirm the subscription;
	// it answers at once or, outside the initial pid namespace, never.
	ackWait = 2 * time.Second
)

type exitCodes struct {
	once sync.Once
	err  error // why there is no connector
	fd   int

	// mu is held while a message is read and recorded, so that take,
	// once it has drained the socket under mu, has seen every event the
	// kernel queued before.
	mu      sync.Mutex
	watched map[int]*exitRecord // tgid -> what its threads' exits said
	buf     []byte
}

type exitRecord struct {
	refs  int // the Attach calls watching the process
	ws    syscall.WaitStatus
	seen  bool          // an exit event of the process arrived
	seenC chan struct{} // closed when seen is first set
	lost  bool          // events were dropped while the process was watched
}

// exitEventWait bounds how long take waits for the exit event of a process
// whose pidfd already said it exited: the kernel wakes pidfd pollers
// (exit_notify) before it sends the proc connector's event, so on another
// CPU the exit can be seen a moment before its event is queued.
const exitEventWait = time.Second

// watch starts recording the exit of pid. Call it before checking that
// the process is alive, so that no exit falls between the two. The error
// says why exit statuses cannot be learnt on this host.
func (c *exitCodes) watch(pid int) error {
	c.once.Do(c.start)
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	r := c.watched[pid]
	if r == nil {
		r = &exitRecord{seenC: make(chan struct{})}
		c.watched[pid] = r
	}
	r.refs++
	c.mu.Unlock()
	return nil
}

// forget undoes one watch of pid.
func (c *exitCodes) forget(pid int) {
	c.mu.Lock()
	c.releaseLocked(pid)
	c.mu.Unlock()
}

func (c *exitCodes) releaseLocked(pid int) {
	if r := c.watched[pid]; r != nil {
		if r.refs--; r.refs <= 0 {
			delete(c.watched, pid)
		}
	}
}

// take returns the status of pid, which has exited, and undoes one watch
// of it.
func (c *exitCodes) take(pid int) Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainLocked()
	r := c.watched[pid]
	if r != nil && !r.seen && !r.lost {
		// Its event is on its way (see exitEventWait); whoever reads
		// the socket records it.
		c.mu.Unlock()
		t := time.NewTimer(exitEventWait)
		select {
		case <-r.seenC:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		c.drainLocked()
	}
	c.releaseLocked(pid)
	switch {
	case r == nil:
		return Status{Code: -1, Why: "its exit was not watched"}
	case r.lost:
		// The last event of its threads may be among those lost: the
		// one seen may be an earlier thread's.
		return Status{Code: -1, Why: "exit events were lost (the kernel's proc connector queue overflowed)"}
	case !r.seen:
		return Status{Code: -1, Why: "the proc connector reported no exit for it"}
	}
	return statusOf(r.ws)
}

// statusOf turns a wait(2) status into a Status.
func statusOf(ws syscall.WaitStatus) Status {
	if ws.Signaled() {
		return Status{Code: -1, Signal: ws.Signal(), Known: true}
	}
	return Status{Code: ws.ExitStatus(), Known: true}
}

func (c *exitCodes) start() {
	fd, err := c.subscribe()
	if err != nil {
		c.err = err
		return
	}
	c.fd = fd
	c.watched = map[int]*exitRecord{}
	c.buf = make([]byte, 16<<10)
	go c.run()
}

// subscribe opens the connector socket, asks for process events and waits
// for the kernel to confirm.
func (c *exitCodes) subscribe() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return -1, fmt.Errorf("proc connector: socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return -1, fmt.Errorf("proc connector: %s: %w (before Linux 6.6 it needs root)", what, err)
		}
		return -1, fmt.Errorf("proc connector: %s: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return fail("bind", err)
	}
	// A large queue, so that a burst of exits on the host does not drop
	// the one that matters; as root the limit can be raised.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, connectorRcvBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, connectorRcvBuffer)
	}
	// Without the filter every fork and exec on the host would wake the
	// daemon; it is an optimisation, so a failure is no error.
	_ = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, exitFilter())

	// The answer is broadcast to every listener and carries our ack
	// number plus one (the kernel renumbers its sequence), so a random
	// one tells ours from another daemon's.
	var b [4]byte
	_, _ = rand.Read(b[:])
	ack := binary.NativeEndian.Uint32(b[:])
	seq := ack
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.NLMSG_DONE)
	ne.PutUint32(msg[8:], seq)
	ne.PutUint32(msg[12:], uint32(os.Getpid()))
	cn := msg[nlmsgHdrLen:]
	ne.PutUint32(cn[0:], cnIdxProc)
	ne.PutUint32(cn[4:], cnValProc)
	ne.PutUint32(cn[8:], seq)
	ne.PutUint32(cn[12:], ack)
	ne.PutUint16(cn[16:], 4)
	ne.PutUint32(cn[cnMsgLen:], procCnMcastListen)
	// To the kernel alone (no group), so other listeners do not see it.
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("subscribe", err)
	}
	// The kernel confirms with a PROC_EVENT_NONE carrying ack+1, and
	// stays silent for a listener outside the initial pid namespace
	// (whose pids it would not know).
	deadline := time.Now().Add(ackWait)
	buf := make([]byte, 64<<10)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			unix.Close(fd)
			return -1, errors.New("proc connector: the kernel did not confirm the subscription (it answers only processes in the host's initial user and pid namespaces)")
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return fail("poll", err)
		}
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR || err == unix.ENOBUFS {
			continue
		}
		if err != nil {
			return fail("receive", err)
		}
		if errno, ok := ackOf(buf[:n], ack+1); ok {
			if errno != 0 {
				return fail("subscribe", syscall.Errno(errno))
			}
			return fd, nil
		}
	}
}

// ackOf finds the kernel's answer to a subscription, which carries ack, in
// a datagram.
func ackOf(b []byte, ack uint32) (errno uint32, ok bool) {
	ne := binary.NativeEndian
	for len(b) >= procEventOff+procEventHdrLen+4 {
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return 0, false
		}
		m := b[:l]
		b = b[(l+3)&^3:]
		if len(m) < procEventOff+procEventHdrLen+4 {
			continue
		}
		cn := m[nlmsgHdrLen:]
		ev := m[procEventOff:]
		if ne.Uint32(cn[0:]) == cnIdxProc && ne.Uint32(cn[12:]) == ack &&
			ne.Uint32(ev[0:]) == procEventNone {
			return ne.Uint32(ev[procEventHdrLen:]), true
		}
		if len(b) < nlmsgHdrLen {
			break
		}
	}
	return 0, false
}

// exitFilter is a socket filter passing only PROC_EVENT_EXIT and
// PROC_EVENT_NONE (the subscription's answer). Classic BPF loads words in
// network byte order, so the constants are the event codes' bytes in this
// machine's order read as big-endian.
func exitFilter() *unix.SockFprog {
	be := func(v uint32) uint32 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], v)
		return binary.BigEndian.Uint32(b[:])
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: procEventOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, Jf: 0, K: be(procEventExit)},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: be(procEventNone)},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},
	}
	return &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
}

// run records exit events for the daemon's lifetime. The socket waits in
// the runtime's poller, so no thread is parked on it.
func (c *exitCodes) run() {
	f := os.NewFile(uintptr(c.fd), "netlink:proc-connector")
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(uintptr) bool {
			c.mu.Lock()
			c.drainLocked()
			c.mu.Unlock()
			return false
		})
	}
	// Only when the runtime cannot poll the socket: block one thread.
	_ = err
	for {
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return
		}
		c.mu.Lock()
		c.drainLocked()
		c.mu.Unlock()
	}
}

// drainLocked reads every queued datagram and records the exits of
// watched processes; c.mu is held.
func (c *exitCodes) drainLocked() {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			// The queue overflowed: any watched process may have lost
			// its exit event.
			for _, r := range c.watched {
				r.lost = true
			}
			continue
		case err != nil:
			return
		}
		c.recordLocked(c.buf[:n])
	}
}

// recordLocked records the exit events in one datagram. The last event of
// a process's threads wins: the whole group's exit status reaches every
// thread, and a main thread that ended early carries only its own.
func (c *exitCodes) recordLocked(b []byte) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return
		}
		m := b[:l]
		b = b[min((l+3)&^3, len(b)):]
		if len(m) < procEventOff+exitEventLen {
			continue
		}
		cn := m[nlmsgHdrLen:]
		ev := m[procEventOff:]
		if ne.Uint32(cn[0:]) != cnIdxProc || ne.Uint32(cn[4:]) != cnValProc || ne.Uint32(ev[0:]) != procEventExit {
			continue
		}
		d := ev[procEventHdrLen:]
		tgid := int(int32(ne.Uint32(d[4:])))
		if r := c.watched[tgid]; r != nil {
			r.ws = syscall.WaitStatus(ne.Uint32(d[8:]))
			if !r.seen {
				r.seen = true
				close(r.seenC)
			}
		}
	}
}
