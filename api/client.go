package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors a client call may wrap; match them with errors.Is.
var (
	// ErrUnreachable: nothing answers on the socket (the daemon is not
	// running, or the path is wrong).
	ErrUnreachable = errors.New("cannot reach vmstated")
	// ErrNotFound: no VM of that name (404).
	ErrNotFound = errors.New("no such VM")
	// ErrForbidden: the caller may not act on that VM (403).
	ErrForbidden = errors.New("permission denied")
	// ErrConflict: not allowed in the VM's current state, or its config
	// is invalid (409).
	ErrConflict = errors.New("not allowed now")
	// ErrNotSupported: the VM's hypervisor cannot do it (501).
	ErrNotSupported = errors.New("not supported by this hypervisor")
)

// Error is an error response of the daemon.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the machine-readable code (Code* constants).
	Code string
	// Message is the daemon's one-line explanation.
	Message string
	// State is the VM's state when Code is CodeNotAllowed.
	State State
}

func (e *Error) Error() string { return e.Message }

// Is maps the status to the package's sentinel errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == CodeNotFound
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrNotSupported:
		return e.Status == http.StatusNotImplemented
	}
	return false
}

// UnreachableError says which socket could not be reached and why.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach vmstated at %s: %v", e.Socket, e.Err)
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// DefaultTimeout bounds a request that is not a stream, unless the
// context ends it sooner.
const DefaultTimeout = 2 * time.Minute

// Client talks to vmstated over its unix socket. It is safe for concurrent
// use.
type Client struct {
	socket string
	hc     *http.Client
	// stream has no overall timeout: events and log follow last as long
	// as their context.
	stream *http.Client
}

// NewClient returns a client of the daemon listening on socket.
func NewClient(socket string) *Client {
	return NewClientDialer(socket, func(ctx context.Context) (net.Conn, error) {
		return DialSocket(ctx, socket)
	})
}

// busyWait bounds how long a dial waits for room in a full listen queue.
const busyWait = 10 * time.Second

// DialSocket connects to the daemon's unix socket. A unix socket's connect fails at once with
// EAGAIN while the daemon's listen queue is full (it is accepting, and
// refusing, a burst of other clients); the dial then tries again with a
// growing pause for up to busyWait, so a busy daemon answers late rather
// than looking dead.
func DialSocket(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	deadline := time.Now().Add(busyWait)
	pause := time.Millisecond
	for {
		c, err := d.DialContext(ctx, "unix", socket)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return c, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// NewClientDialer returns a client whose connections come from dial (a
// stream to a daemon's socket, such as ssh running "vmstatedctl
// dial-stdio" on another host); target names the daemon in errors. The
// client keeps idle connections for reuse and dials another only when a
// second request runs at the same time (a command that follows events
// while it acts). A dial error is returned as an *UnreachableError.
func NewClientDialer(target string, dial func(ctx context.Context) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dial(ctx)
			if err != nil {
				return nil, &UnreachableError{Socket: target, Err: unwrapDial(err)}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: DefaultTimeout,
		DisableCompression:    true,
	}
	return &Client{
		socket: target,
		hc:     &http.Client{Transport: tr, Timeout: DefaultTimeout},
		stream: &http.Client{Transport: tr},
	}
}

// Socket returns the socket path (or the target) the client uses.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
}

// base is the URL host part; the transport ignores it and dials the socket.
const base = "http://vmstated"

func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, query url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if raw, ok := body.(io.Reader); ok {
		rd = raw
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if _, raw := body.(io.Reader); raw {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return nil, ue
		}
		if isDialError(err) {
			return nil, &UnreachableError{Socket: c.socket, Err: unwrapDial(err)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// isDialError reports whether err happened while connecting to the socket
// (as opposed to a request that reached the daemon).
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// unwrapDial keeps the part of a dial error that says what went wrong
// ("connect: no such file or directory").
func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// readError turns an error response into an *Error.
func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	var eb ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == "" {
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = resp.Status
		}
		return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: msg}
	}
	return &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error, State: eb.State}
}

func (c *Client) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, c.hc, http.MethodGet, path, query, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decode(resp, out)
}

func decode(resp *http.Response, out any) error {
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the daemon's answer to %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

func vmPath(name string, rest ...string) string {
	p := Version + "/vms/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// List returns every VM the caller may see, sorted by name.
func (c *Client) List(ctx context.Context) ([]Status, error) {
	var out []Status
	if err := c.getJSON(ctx, Version+"/vms", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns one VM's status.
func (c *Client) Get(ctx context.Context, name string) (Status, error) {
	var out Status
	err := c.getJSON(ctx, vmPath(name), nil, &out)
	return out, err
}

// Do performs an action other than screenshot on a VM and returns its
// status as the daemon saw it right after. opts is used by stop only.
// The action has begun, not necessarily finished: follow the events (or
// WaitState) to see it through.
func (c *Client) Do(ctx context.Context, name string, a Action, opts *StopOptions) (Status, error) {
	if a == ActionScreenshot {
		return Status{}, fmt.Errorf("use Screenshot for %s", a)
	}
	var body any
	if opts != nil {
		body = opts
	}
	resp, err := c.do(ctx, c.hc, http.MethodPost, vmPath(name, string(a)), nil, body)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var out Status
	return out, decode(resp, &out)
}

// Start starts a VM (after the VMs it depends on).
func (c *Client) Start(ctx context.Context, name string) (Status, error) {
	return c.Do(ctx, name, ActionStart, nil)
}

// Stop stops a VM.
func (c *Client) Stop(ctx context.Context, name string, opts StopOptions) (Status, error) {
	return c.Do(ctx, name, ActionStop, &opts)
}

// Suspend saves a running or paused VM's guest and takes the VM down to
// suspended; a start restores it.
func (c *Client) Suspend(ctx context.Context, name string, opts SuspendOptions) (Status, error) {
	resp, err := c.do(ctx, c.hc, http.MethodPost, vmPath(name, string(ActionSuspend)), nil, opts)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var out Status
	return out, decode(resp, &out)
}

// Saved returns a suspended VM's saved guest as the stream send writes
// (header, state, trailer); the caller closes it.
func (c *Client) Saved(ctx context.Context, name string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, c.stream, http.MethodGet, vmPath(name, "saved"), nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Receive hands the daemon a stream that send wrote, for the stopped VM
// name, which it then starts from it. A stream that is not whole, or not
// fit for the VM, is refused (400) and the VM stays stopped.
func (c *Client) Receive(ctx context.Context, name string, r io.Reader) (Status, error) {
	resp, err := c.do(ctx, c.stream, http.MethodPost, vmPath(name, "receive"), nil, r)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var out Status
	return out, decode(resp, &out)
}

// Screenshot writes an image of the VM's display to w and returns its
// format ("png" or "ppm").
func (c *Client) Screenshot(ctx context.Context, name string, w io.Writer) (string, error) {
	resp, err := c.do(ctx, c.hc, http.MethodPost, vmPath(name, string(ActionScreenshot)), nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return "", fmt.Errorf("reading the screenshot of %s: %w", name, err)
	}
	return formatOf(resp.Header.Get("Content-Type")), nil
}

func formatOf(ct string) string {
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case "image/png":
		return "png"
	case "image/x-portable-pixmap":
		return "ppm"
	}
	return strings.TrimPrefix(mt, "image/")
}

// Info returns what the VM's hypervisor says about itself.
func (c *Client) Info(ctx context.Context, name string) (Info, error) {
	var out Info
	err := c.getJSON(ctx, vmPath(name, "info"), nil, &out)
	return out, err
}

// LogOptions choose what Log returns.
type LogOptions struct {
	// Lines is how many of the last lines of the current log file to
	// send first: 0 means all of them, negative means none.
	Lines int
	// Follow keeps the stream open and sends new lines as they are
	// written, until ctx ends or the daemon exits.
	Follow bool
}

// Log returns a VM's log as text. The caller closes the reader; with
// Follow it ends when ctx ends.
func (c *Client) Log(ctx context.Context, name string, opts LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	switch {
	case opts.Lines > 0:
		q.Set("lines", strconv.Itoa(opts.Lines))
	case opts.Lines < 0:
		q.Set("lines", "0")
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	resp, err := c.do(ctx, c.stream, http.MethodGet, vmPath(name, "log"), q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Reload asks the daemon to rescan its config directories now; it returns
// once the changes have reached the VMs, with what changed.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var out ReloadResult
	resp, err := c.do(ctx, c.hc, http.MethodPost, Version+"/reload", nil, nil)
	if err != nil {
		return out, err
	}
	return out, decode(resp, &out)
}

// EventStream reads GET /v1/events.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	// Last is the sequence number of the last event read; resume after it.
	Last uint64
}

// EventOptions choose what Events returns.
type EventOptions struct {
	// After resumes the stream: the daemon first replays the events it
	// still keeps whose sequence number is greater; a KindLost event says
	// when some are gone.
	After uint64
	// Replay asks for the replay even with After 0: every event kept.
	Replay bool
	// VM keeps only the events of that VM (and KindLost notices).
	VM string
}

// Events opens the event stream. Once Events returns, the subscription is
// in place: nothing published after that is missed (short of a KindLost
// notice).
func (c *Client) Events(ctx context.Context, opts EventOptions) (*EventStream, error) {
	q := url.Values{}
	if opts.After > 0 || opts.Replay {
		q.Set("after", strconv.FormatUint(opts.After, 10))
	}
	if opts.VM != "" {
		q.Set("vm", opts.VM)
	}
	resp, err := c.do(ctx, c.stream, http.MethodGet, Version+"/events", q, nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &EventStream{body: resp.Body, sc: sc, Last: opts.After}, nil
}

// Next returns the next event. It returns io.EOF when the daemon ended the
// stream (it exits, or this reader fell too far behind: then the last
// event was KindLost and one may resume after Last).
func (s *EventStream) Next() (Event, error) {
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return Event{}, fmt.Errorf("bad event line %q: %w", line, err)
		}
		if e.Seq > s.Last {
			s.Last = e.Seq
		}
		return e, nil
	}
	if err := s.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, io.EOF
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
