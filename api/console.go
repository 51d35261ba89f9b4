package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// ConsoleMode is how Console attaches.
type ConsoleMode string

const (
	// ConsoleReadWrite types into the console; refused (409,
	// CodeConsoleBusy) while another client does.
	ConsoleReadWrite ConsoleMode = "rw"
	// ConsoleReadOnly only watches.
	ConsoleReadOnly ConsoleMode = "ro"
	// ConsoleForce types into the console, detaching the client that did.
	ConsoleForce ConsoleMode = "force"
)

// ConsoleOptions choose how Console attaches.
type ConsoleOptions struct {
	Mode ConsoleMode
	// Lines is how many of the last lines of output the daemon replays
	// first; negative means all it keeps.
	Lines int
}

// Console attaches to a VM's serial console. The connection carries the
// frames of package console both ways until either side closes it; an
// end without an end frame means the daemon went away.
func (c *Client) Console(ctx context.Context, name string, opts ConsoleOptions) (io.ReadWriteCloser, error) {
	q := url.Values{}
	if opts.Mode != "" {
		q.Set("mode", string(opts.Mode))
	}
	if opts.Lines < 0 {
		q.Set("lines", "all")
	} else {
		q.Set("lines", strconv.Itoa(opts.Lines))
	}
	path := vmPath(name, "console")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", ConsoleProtocol)
	resp, err := c.stream.Do(req)
	if err != nil {
		if isDialError(err) {
			return nil, &UnreachableError{Socket: c.socket, Err: unwrapDial(err)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			return nil, readError(resp)
		}
		return nil, fmt.Errorf("GET %s: the daemon answered %s instead of switching to the console", path, resp.Status)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: the connection cannot carry the console", path)
	}
	return rwc, nil
}
