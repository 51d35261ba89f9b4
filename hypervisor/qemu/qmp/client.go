// Package qmp is a client for the QEMU Machine Protocol: JSON commands and
// replies plus asynchronous events over a stream socket.
//
// A Client reads the server's greeting, negotiates capabilities, and then
// runs one reader goroutine that matches replies to commands by id and
// hands events to subscribers. Any number of goroutines may run commands at
// once. Every call takes a context; when the server goes away, calls in
// flight and later calls fail with an error wrapping ErrClosed.
//
// Events never block the reader: each Subscription has a bounded buffer,
// and when it is full further events for that subscriber are dropped and
// counted (see Subscription.Dropped). Subscribe before the first command
// (WithSubscription) to be sure to see every event.
//
// Messages are read as a stream of JSON objects, so both QEMU's one-line
// output and its pretty-printed form work. Anything that is not JSON ends
// the connection with an error wrapping ErrProtocol and ErrClosed. The
// size of one message is not limited: the server is trusted that far.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrClosed means the connection has ended: the server closed it (QEMU
// exited), it broke, the peer spoke something other than QMP, or Close was
// called. Errors from calls on a closed Client wrap it.
var ErrClosed = errors.New("qmp: connection closed")

// Option configures a Client.
type Option func(*options)

type options struct {
	subs []*Subscription
}

// WithSubscription registers s before the connection starts reading
// events, so that s sees every event from the first one on.
func WithSubscription(s *Subscription) Option {
	return func(o *options) { o.subs = append(o.subs, s) }
}

// Client is a connection to one QMP server.
type Client struct {
	conn     net.Conn
	dec      *json.Decoder
	greeting Greeting

	// wmu serialises writes and the registration of pending calls, so
	// that pending calls are queued in the order the server sees them.
	wmu sync.Mutex
	// dmu guards writeSeq, which lets a cancelled context interrupt only
	// the write it belongs to.
	dmu      sync.Mutex
	writeSeq uint64

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*call
	order   []uint64 // pending ids in the order sent
	subs    map[*Subscription]struct{}
	err     error

	done chan struct{}
}

type call struct {
	cmd string
	ch  chan result
}

type result struct {
	ret json.RawMessage
	err error
}

// Dial connects to the QMP unix socket at path and negotiates
// capabilities.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: connect: %w", err)
	}
	c, err := NewClient(ctx, conn, opts...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// NewClient runs the QMP handshake on conn (greeting, qmp_capabilities)
// and returns a Client that owns conn. On error conn is closed.
func NewClient(ctx context.Context, conn net.Conn, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		conn:    conn,
		dec:     newDecoder(conn),
		pending: make(map[uint64]*call),
		subs:    make(map[*Subscription]struct{}),
		done:    make(chan struct{}),
	}
	for _, s := range o.subs {
		if s.attach(c) {
			c.subs[s] = struct{}{}
		}
	}

	type greetResult struct {
		g   Greeting
		err error
	}
	gch := make(chan greetResult, 1)
	go func() {
		m, err := c.read()
		switch {
		case err != nil:
		case m.kind != kindGreeting:
			err = fmt.Errorf("%w: the first message is not a QMP greeting", ErrProtocol)
		}
		gch <- greetResult{m.greeting, err}
	}()
	select {
	case r := <-gch:
		if r.err != nil {
			c.shutdown(r.err)
			return nil, fmt.Errorf("qmp: greeting: %w", r.err)
		}
		c.greeting = r.g
	case <-ctx.Done():
		conn.Close()
		<-gch
		c.shutdown(ErrClosed)
		return nil, fmt.Errorf("qmp: waiting for the greeting: %w", ctx.Err())
	}

	go c.readLoop()
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.shutdown(ErrClosed)
		return nil, fmt.Errorf("qmp: capabilities negotiation: %w", err)
	}
	return c, nil
}

// Greeting returns the server's greeting.
func (c *Client) Greeting() Greeting { return c.greeting }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (wrapping ErrClosed), or nil while
// it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection. Calls in flight fail with ErrClosed.
func (c *Client) Close() error {
	c.shutdown(ErrClosed)
	return nil
}

// Execute runs a command and returns the raw "return" member of its reply.
// args is marshalled as the command's "arguments" (nil for none). A
// failure reported by the server is an *Error.
//
// When ctx ends before the reply arrives, Execute returns ctx's error; the
// command may still run on the server, and its late reply is discarded.
// A write that cannot complete breaks the stream, so it closes the Client.
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return c.execute(ctx, cmd, args, nil)
}

// ExecuteWithFile is Execute with f passed along (SCM_RIGHTS), for
// commands such as add-fd that take a descriptor. The connection must be a
// unix socket.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	if _, ok := c.conn.(*net.UnixConn); !ok {
		return nil, fmt.Errorf("qmp: %s: passing a descriptor needs a unix socket connection", cmd)
	}
	return c.execute(ctx, cmd, args, syscall.UnixRights(int(f.Fd())))
}

func (c *Client) execute(ctx context.Context, cmd string, args any, oob []byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{Execute: cmd, Arguments: args}

	cl := &call{cmd: cmd, ch: make(chan result, 1)}

	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		c.wmu.Unlock()
		return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	c.order = append(c.order, id)
	c.mu.Unlock()

	req.ID = id
	b, err := json.Marshal(req)
	if err != nil {
		c.wmu.Unlock()
		c.forget(id)
		return nil, fmt.Errorf("qmp: %s: encoding arguments: %w", cmd, err)
	}
	b = append(b, '\n')
	werr := c.write(ctx, b, oob)
	c.wmu.Unlock()
	if werr != nil {
		c.forget(id)
		if ctx.Err() != nil {
			// The write may have been torn; the stream is unusable.
			c.shutdown(fmt.Errorf("%w: a command write was interrupted", ErrClosed))
			return nil, fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
		}
		c.shutdown(fmt.Errorf("%w: write: %v", ErrClosed, werr))
		return nil, fmt.Errorf("qmp: %s: %w", cmd, c.Err())
	}

	select {
	case r := <-cl.ch:
		if r.err != nil {
			var qe *Error
			if errors.As(r.err, &qe) {
				return nil, r.err
			}
			return nil, fmt.Errorf("qmp: %s: %w", cmd, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
	}
}

// Run executes a command and decodes its "return" member into result
// (which may be nil to discard it).
func (c *Client) Run(ctx context.Context, cmd string, args, result any) error {
	ret, err := c.Execute(ctx, cmd, args)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(ret, result); err != nil {
		return fmt.Errorf("qmp: %s: decoding the reply: %w", cmd, err)
	}
	return nil
}

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// write sends b, honouring ctx's deadline and cancellation. The caller
// holds wmu.
func (c *Client) write(ctx context.Context, b, oob []byte) error {
	c.dmu.Lock()
	c.writeSeq++
	seq := c.writeSeq
	c.dmu.Unlock()

	dl, _ := ctx.Deadline() // zero means none
	c.conn.SetWriteDeadline(dl)
	stop := context.AfterFunc(ctx, func() {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if c.writeSeq == seq {
			c.conn.SetWriteDeadline(aLongTimeAgo)
		}
	})
	var err error
	if oob != nil {
		_, _, err = c.conn.(*net.UnixConn).WriteMsgUnix(b, oob, nil)
	} else {
		_, err = c.conn.Write(b)
	}
	c.dmu.Lock()
	c.writeSeq++ // disarm the AfterFunc for this write
	c.dmu.Unlock()
	stop()
	return err
}

// forget drops a pending call whose caller no longer waits. Its id stays
// in the send order until its reply arrives, so that a reply without an id
// is still matched to the right command.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, id)
}

// removeLocked takes id out of the send order and returns its call, or
// nil when nobody waits for it any more.
func (c *Client) removeLocked(id uint64) *call {
	for i, v := range c.order {
		if v == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	cl := c.pending[id]
	delete(c.pending, id)
	return cl
}

func newDecoder(r io.Reader) *json.Decoder {
	return json.NewDecoder(bufio.NewReader(r))
}

// read decodes the next message from the stream.
func (c *Client) read() (message, error) {
	var raw json.RawMessage
	if err := c.dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return message{}, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		if errors.Is(err, io.EOF) {
			return message{}, fmt.Errorf("%w: the server closed the connection", ErrClosed)
		}
		return message{}, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return decodeMessage(raw)
}

func (c *Client) readLoop() {
	for {
		m, err := c.read()
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				err = fmt.Errorf("%w: %w", ErrClosed, err)
			}
			c.shutdown(err)
			return
		}
		c.dispatch(m)
	}
}

func (c *Client) dispatch(m message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.kind {
	case kindEvent:
		for s := range c.subs {
			s.deliver(m.event)
		}
	case kindReturn, kindError:
		var id uint64
		switch {
		case m.hasID:
			id = m.id
		case !m.anyID && len(c.order) > 0:
			// A reply without an id answers a command the server could
			// not parse; the server handles commands in order, so it is
			// the oldest one still waiting.
			id = c.order[0]
		default:
			return
		}
		cl := c.removeLocked(id)
		if cl == nil {
			return // the caller gave up, or not our id
		}
		if m.kind == kindError {
			e := *m.err
			e.Command = cl.cmd
			cl.ch <- result{err: &e}
		} else {
			cl.ch <- result{ret: m.ret}
		}
	}
	// Greetings after the first and unknown messages are ignored.
}

// shutdown ends the connection once, failing pending calls with err and
// closing every subscription.
func (c *Client) shutdown(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	for id, cl := range c.pending {
		cl.ch <- result{err: err}
		delete(c.pending, id)
	}
	c.order = nil
	for s := range c.subs {
		s.closeLocked()
		delete(c.subs, s)
	}
	c.mu.Unlock()
	c.conn.Close()
	close(c.done)
}
