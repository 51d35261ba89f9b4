// Package tcprelay makes a unix socket reachable over TCP: every
// connection accepted on the TCP side is joined to a new connection to the
// socket, bytes passed both ways until either side closes. The daemon
// uses it for QEMU's VNC server, which listens on a socket in the VM's run
// directory, so that the TCP port is the daemon's and stays the same
// across QEMU restarts.
package tcprelay

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds connecting to the socket for one client.
const dialTimeout = 10 * time.Second

// MaxConns bounds the connections relayed at once.
const MaxConns = 16

// Relay is one listening TCP port.
type Relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// Listen listens on addr (host:port; port 0 lets the kernel choose) and
// relays each connection to the unix socket target.
func Listen(addr, target string) (*Relay, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address listened on.
func (r *Relay) Addr() *net.TCPAddr { return r.ln.Addr().(*net.TCPAddr) }

// Close stops listening and ends every relayed connection.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.done = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	var pause time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors (EMFILE, ENFILE), or a connection
			// that went before it was taken: the port still looks
			// open to clients, so it must be served again once it
			// can be. The pause keeps a lasting error from spinning.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		if !r.track(c) {
			c.Close()
			continue
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

// track registers c, unless the relay is closed or full.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || len(r.conns) >= 2*MaxConns {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) relay(c net.Conn) {
	defer r.wg.Done()
	defer r.untrack(c)
	u, err := net.DialTimeout("unix", r.target, dialTimeout)
	if err != nil {
		return
	}
	if !r.track(u) {
		u.Close()
		return
	}
	defer r.untrack(u)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Either side ending ends both.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}
