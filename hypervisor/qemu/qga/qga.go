// Package qga is a client for the QEMU guest agent (qemu-guest-agent), the
// program inside a guest that answers JSON commands on a virtio-serial
// port QEMU exposes on the host as a unix socket.
//
// The agent is part of the guest, so nothing it says is trusted: every
// reply is bounded in size, every call in time (by its context), and
// strings meant for people are cleaned of control characters before they
// are returned.
//
// The channel survives the client: a reply to a request whose client gave
// up may still be waiting in it, and the agent's parser may hold half a
// request. Dial therefore resynchronises first (a 0xFF byte, which resets
// the agent's parser, then guest-sync-delimited with a random id, whose
// reply the agent marks with a leading 0xFF) and skips everything up to
// the reply carrying that id. A Client runs one command at a time; a
// command that fails on a timeout leaves the stream unknown, and the
// Client refuses further commands.
package qga

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"
)

// MaxReply bounds one reply line; a longer one ends the Client.
const MaxReply = 1 << 20

// maxStale bounds what Dial skips while looking for its sync reply.
const maxStale = 4 << 20

// ErrNoAgent means nothing answered the sync request before the context
// ended: no agent runs in the guest, it has not started yet, or the guest
// is paused.
var ErrNoAgent = errors.New("qga: the guest agent did not answer")

// ErrBroken means an earlier command failed half way (a timeout, a reply
// that was not JSON) and the Client no longer knows where the stream
// stands. Dial again.
var ErrBroken = errors.New("qga: connection is out of step; dial again")

// Error is a command failure the agent reported.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qga: %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Client is one connection to a guest agent.
type Client struct {
	conn net.Conn
	r    *bufio.Reader

	mu     sync.Mutex
	broken error
}

// Dial connects to the agent's socket and resynchronises with it. ctx
// bounds the whole of it: with no agent in the guest the sync is never
// answered, and Dial returns an error wrapping ErrNoAgent when ctx ends.
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("qga: connecting to %s: %w", socket, err)
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if err := c.sync(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// bound makes ctx's deadline (and its cancellation) the connection's.
func (c *Client) bound(ctx context.Context) func() {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Time{}
	}
	c.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

func randomID() int64 {
	var b [8]byte
	rand.Read(b[:])
	// Below 2^53, so that any JSON parser on the way keeps it exact.
	return int64(binary.BigEndian.Uint64(b[:]) >> 11)
}

func (c *Client) sync(ctx context.Context) error {
	defer c.bound(ctx)()
	id := randomID()
	req, _ := json.Marshal(map[string]any{"execute": "guest-sync-delimited", "arguments": map[string]int64{"id": id}})
	// The leading 0xFF makes the agent drop whatever half request an
	// earlier client left in its parser.
	if _, err := c.conn.Write(append(append([]byte{0xff}, req...), '\n')); err != nil {
		return c.ioError(ctx, "guest-sync-delimited", err)
	}
	skipped := 0
	for {
		line, err := c.readLine()
		if err != nil {
			return c.ioError(ctx, "guest-sync-delimited", err)
		}
		skipped += len(line)
		if skipped > maxStale {
			return fmt.Errorf("qga: more than %d bytes before the sync reply: the agent is not answering its protocol", maxStale)
		}
		// Only a line the agent marked as a sync reply counts; what
		// stands before its 0xFF is stale.
		i := bytes.LastIndexByte(line, 0xff)
		if i < 0 {
			continue
		}
		var rep struct {
			Return *int64 `json:"return"`
		}
		if json.Unmarshal(line[i+1:], &rep) == nil && rep.Return != nil && *rep.Return == id {
			return nil
		}
	}
}

// ioError turns a read or write failure into an error that says what it
// means.
func (c *Client) ioError(ctx context.Context, cmd string, err error) error {
	var ne net.Error
	if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		if cmd == "guest-sync-delimited" {
			return fmt.Errorf("%w within the time allowed: is qemu-guest-agent installed and running in the guest?", ErrNoAgent)
		}
		return fmt.Errorf("qga: %s: no reply in time: %w", cmd, context.DeadlineExceeded)
	}
	return fmt.Errorf("qga: %s: %w", cmd, err)
}

// readLine returns the next line without its newline, at most MaxReply
// bytes.
func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		if len(line)+len(frag) > MaxReply {
			return nil, fmt.Errorf("a reply longer than %d bytes", MaxReply)
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// Run sends cmd with args (nil for none) and decodes the reply's return
// value into result (nil to ignore it).
func (c *Client) Run(ctx context.Context, cmd string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	defer c.bound(ctx)()
	if err := c.send(cmd, args); err != nil {
		return c.fail(ctx, cmd, err)
	}
	line, err := c.readLine()
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	var rep struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return c.fail(ctx, cmd, fmt.Errorf("the reply is not JSON: %w", err))
	}
	if rep.Error != nil {
		return &Error{Command: cmd, Class: Clean(rep.Error.Class, 64), Desc: Clean(rep.Error.Desc, 512)}
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(rep.Return, result); err != nil {
		return fmt.Errorf("qga: %s: unexpected reply: %w", cmd, err)
	}
	return nil
}

func (c *Client) send(cmd string, args any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(append(b, '\n'))
	return err
}

// fail marks the Client out of step and returns the error.
func (c *Client) fail(ctx context.Context, cmd string, err error) error {
	err = c.ioError(ctx, cmd, err)
	c.broken = fmt.Errorf("%w (after: %v)", ErrBroken, err)
	return err
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error { return c.Run(ctx, "guest-ping", nil, nil) }

// Info is what guest-info reports.
type Info struct {
	Version  string    `json:"version"`
	Commands []Command `json:"supported_commands"`
}

// Command is one command the agent knows.
type Command struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// Supports reports whether the agent has cmd and has it enabled.
func (i Info) Supports(cmd string) bool {
	for _, c := range i.Commands {
		if c.Name == cmd {
			return c.Enabled
		}
	}
	return false
}

// Info asks the agent for its version and commands.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	err := c.Run(ctx, "guest-info", nil, &i)
	i.Version = Clean(i.Version, 64)
	return i, err
}

// Interface is one network interface of the guest.
type Interface struct {
	Name string `json:"name"`
	MAC  string `json:"hardware-address,omitempty"`
	// Addresses are in CIDR notation ("192.0.2.10/24").
	Addresses []string `json:"-"`
}

// maxInterfaces and maxAddresses bound what a guest can make the daemon
// keep.
const (
	maxInterfaces = 64
	maxAddresses  = 64
)

// Interfaces lists the guest's network interfaces and their addresses
// (guest-network-get-interfaces). Addresses that do not parse are left
// out.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var raw []struct {
		Name string `json:"name"`
		MAC  string `json:"hardware-address"`
		IPs  []struct {
			Type    string `json:"ip-address-type"`
			Address string `json:"ip-address"`
			Prefix  int    `json:"prefix"`
		} `json:"ip-addresses"`
	}
	if err := c.Run(ctx, "guest-network-get-interfaces", nil, &raw); err != nil {
		return nil, err
	}
	var out []Interface
	for _, r := range raw {
		if len(out) == maxInterfaces {
			break
		}
		ifc := Interface{Name: Clean(r.Name, 64), MAC: Clean(r.MAC, 64)}
		for _, ip := range r.IPs {
			a := net.ParseIP(ip.Address)
			if a == nil || len(ifc.Addresses) == maxAddresses {
				continue
			}
			bits := 32
			if a.To4() == nil {
				bits = 128
			}
			if ip.Prefix < 0 || ip.Prefix > bits {
				continue
			}
			ifc.Addresses = append(ifc.Addresses, fmt.Sprintf("%s/%d", a, ip.Prefix))
		}
		out = append(out, ifc)
	}
	return out, nil
}

// Hostname asks for the guest's host name.
func (c *Client) Hostname(ctx context.Context) (string, error) {
	var r struct {
		Name string `json:"host-name"`
	}
	err := c.Run(ctx, "guest-get-host-name", nil, &r)
	return Clean(r.Name, 255), err
}

// OSInfo is what guest-get-osinfo reports (os-release and uname).
type OSInfo struct {
	ID            string `json:"id,omitempty"`
	Name          string `json:"name,omitempty"`
	PrettyName    string `json:"pretty-name,omitempty"`
	Version       string `json:"version,omitempty"`
	VersionID     string `json:"version-id,omitempty"`
	KernelRelease string `json:"kernel-release,omitempty"`
	KernelVersion string `json:"kernel-version,omitempty"`
	Machine       string `json:"machine,omitempty"`
}

// OSInfo asks for the guest's operating system.
func (c *Client) OSInfo(ctx context.Context) (OSInfo, error) {
	var o OSInfo
	err := c.Run(ctx, "guest-get-osinfo", nil, &o)
	for _, s := range []*string{&o.ID, &o.Name, &o.PrettyName, &o.Version, &o.VersionID, &o.KernelRelease, &o.KernelVersion, &o.Machine} {
		*s = Clean(*s, 256)
	}
	return o, err
}

// shutdownGrace is how long Shutdown listens for the agent's refusal:
// a shutdown it starts is never answered, one it could not start is
// answered with an error once its shutdown program has failed.
const shutdownGrace = time.Second

// Shutdown asks the agent to power the guest off (guest-shutdown, mode
// "powerdown"). The agent answers only a failure, so Shutdown waits for
// one for a moment (or until the connection ends with the guest) and
// returns nil when none came.
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	const cmd = "guest-shutdown"
	wctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	defer c.bound(wctx)()
	if err := c.send(cmd, map[string]string{"mode": "powerdown"}); err != nil {
		return c.fail(ctx, cmd, err)
	}
	c.broken = fmt.Errorf("%w: the guest was asked to shut down", ErrBroken)
	line, err := c.readLine()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Silence or the channel closing as QEMU exits: accepted.
		return nil
	}
	var rep struct {
		Error *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if json.Unmarshal(line, &rep) == nil && rep.Error != nil {
		return &Error{Command: cmd, Class: Clean(rep.Error.Class, 64), Desc: Clean(rep.Error.Desc, 512)}
	}
	return nil
}

// Clean makes s from the guest fit to show: valid UTF-8, no control
// characters (which could move a terminal's cursor), trimmed, at most max
// bytes.
func Clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = s[:max]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}
