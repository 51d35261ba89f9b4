package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/peercred"
)

// Connection limits. Every connection counts from accept to close, whatever
// it carries (a request, an idle keep-alive, a stream, an upgraded
// console). The caps keep any one user, and all ordinary users together,
// from holding the descriptors that VM work needs (hook pipes, QMP and
// console sockets, log files, state records), and keep a share that only
// root and the daemon's own user may use, so that they always get in.
const (
	DefaultMaxConns        = 1024
	DefaultMaxConnsPerUser = 64
	DefaultReservedConns   = 64

	// refusers bounds the refused connections that wait for their
	// request before being answered; past it the one waiting longest is
	// closed without an answer.
	refusers = 64
	// refusalTime bounds the wait for a refused connection's request and
	// the writing of the answer.
	refusalTime = time.Second
	// refusalLogEvery is the least time between two log lines about
	// refused connections.
	refusalLogEvery = 10 * time.Second
)

// limits are the connection caps in force.
type limits struct {
	total    int // all connections
	perUser  int // one uid other than root's and the daemon's
	reserved int // of total, only for root and the daemon's uid
}

// newLimits applies the defaults to the configured caps and fits them to
// the descriptor limit nofile: connections, the refused ones waiting for
// their answer included, never take more than half of it; the other half
// is the reserve of the VMs' own work.
func newLimits(total, perUser, reserved int, nofile uint64) limits {
	if total <= 0 {
		total = DefaultMaxConns
	}
	if perUser <= 0 {
		perUser = DefaultMaxConnsPerUser
	}
	if reserved <= 0 {
		reserved = DefaultReservedConns
	}
	if half := nofile / 2; half < uint64(total+refusers) {
		total = int(half) - refusers
	}
	total = max(total, 2)
	reserved = min(reserved, total/2)
	reserved = max(reserved, 1)
	perUser = min(perUser, total-reserved)
	return limits{total: total, perUser: perUser, reserved: reserved}
}

// ConnStats is a snapshot of the connections a server holds.
type ConnStats struct {
	// Open is the number of connections open now.
	Open int
	// ByUID counts the open connections of each uid (those whose peer
	// credentials could not be read are not in it).
	ByUID map[uint32]int
	// Refused counts the connections refused since the server was made.
	Refused uint64
	// MaxConns, MaxConnsPerUser and ReservedConns are the caps in force,
	// after fitting them to the descriptor limit.
	MaxConns, MaxConnsPerUser, ReservedConns int
}

// Connections reports the connections the server holds and the caps.
func (s *Server) Connections() ConnStats {
	t := s.conns
	t.mu.Lock()
	defer t.mu.Unlock()
	st := ConnStats{Open: t.total, ByUID: make(map[uint32]int, len(t.byUID)), Refused: t.refused,
		MaxConns: t.lim.total, MaxConnsPerUser: t.lim.perUser, ReservedConns: t.lim.reserved}
	for uid, n := range t.byUID {
		st.ByUID[uid] = n
	}
	return st
}

// tracker counts the open connections and admits or refuses new ones.
type tracker struct {
	lim     limits
	isAdmin func(peer) bool
	logf    func(string, ...any)

	mu      sync.Mutex
	waiting []net.Conn // refused connections waiting for their request, oldest first
	total   int
	others  int              // connections of users other than the admins
	byUID   map[uint32]int   // open connections per known uid
	unknown int              // open connections whose peer is not known
	refused uint64           // refusals so far
	logged  time.Time        // when a refusal was last logged
	quiet   uint64           // refusals not logged since then
	now     func() time.Time // the clock, for the log's rate
}

func newTracker(lim limits, isAdmin func(peer) bool, logf func(string, ...any)) *tracker {
	return &tracker{lim: lim, isAdmin: isAdmin, logf: logf, byUID: map[uint32]int{}, now: time.Now}
}

// refusal is why a connection was not admitted.
type refusal struct {
	status int
	msg    string
}

// admit counts a new connection of p in, or says why it may not come in.
func (t *tracker) admit(p peer) *refusal {
	admin := t.isAdmin(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total >= t.lim.total {
		return &refusal{http.StatusServiceUnavailable, fmt.Sprintf(
			"the daemon holds %d connections, its limit; try again once some have closed", t.lim.total)}
	}
	if !admin {
		if t.others >= t.lim.total-t.lim.reserved {
			return &refusal{http.StatusServiceUnavailable, fmt.Sprintf(
				"the daemon holds %d connections of users other than root, their limit; try again once some have closed",
				t.lim.total-t.lim.reserved)}
		}
		n := t.unknown
		if p.known {
			n = t.byUID[p.cred.UID]
		}
		if n >= t.lim.perUser {
			who := "callers whose credentials cannot be read"
			if p.known {
				who = "uid " + strconv.FormatUint(uint64(p.cred.UID), 10)
			}
			return &refusal{http.StatusTooManyRequests, fmt.Sprintf(
				"%s holds %d connections to the daemon, the limit per user; close some (event streams, log -f, idle clients) and try again",
				who, t.lim.perUser)}
		}
		t.others++
	}
	t.total++
	if p.known {
		t.byUID[p.cred.UID]++
	} else {
		t.unknown++
	}
	return nil
}

// release counts a connection of p out.
func (t *tracker) release(p peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if !t.isAdmin(p) {
		t.others--
	}
	if !p.known {
		t.unknown--
		return
	}
	if t.byUID[p.cred.UID]--; t.byUID[p.cred.UID] <= 0 {
		delete(t.byUID, p.cred.UID)
	}
}

// refuse answers c with the refusal and closes it. Refusals are logged at
// most once per refusalLogEvery, with the number left unlogged in
// between, so a flood cannot flood the log.
//
// An HTTP client takes an answer that comes before its request for a
// broken connection, so the answer waits for the request. Usually it is
// there already (the connection waited in the listen queue) and the answer
// goes at once; otherwise the connection waits, up to refusalTime, among
// at most refusers others. A flood of connections that send nothing only
// pushes the oldest of those out, unanswered.
func (t *tracker) refuse(c net.Conn, p peer, why *refusal) {
	t.mu.Lock()
	t.refused++
	now := t.now()
	var line string
	if t.logged.IsZero() || now.Sub(t.logged) >= refusalLogEvery {
		line = fmt.Sprintf("control socket: refused a connection of %s: %s", peerName(p), why.msg)
		if t.quiet > 0 {
			line += fmt.Sprintf(" (and %d more since %s)", t.quiet, t.logged.UTC().Format(time.RFC3339))
		}
		t.logged, t.quiet = now, 0
	} else {
		t.quiet++
	}
	t.mu.Unlock()
	if line != "" {
		t.logf("%s", line)
	}
	answer := refusalResponse(why)
	var buf [4096]byte
	if n := readPending(c, buf[:]); n > 0 {
		// The send buffer of a new connection is empty: this write does
		// not block.
		_ = c.SetWriteDeadline(time.Now().Add(refusalTime))
		_, _ = c.Write(answer)
		c.Close()
		return
	}
	t.mu.Lock()
	if len(t.waiting) >= refusers {
		t.waiting[0].Close()
		t.waiting = t.waiting[1:]
	}
	t.waiting = append(t.waiting, c)
	t.mu.Unlock()
	go func() {
		writeRefusal(c, answer)
		t.mu.Lock()
		defer t.mu.Unlock()
		for i, w := range t.waiting {
			if w == c {
				t.waiting = append(t.waiting[:i], t.waiting[i+1:]...)
				break
			}
		}
	}()
}

func peerName(p peer) string {
	if !p.known {
		return "an unknown peer"
	}
	return p.cred.String()
}

// refusalResponse is the complete HTTP response that refuses a
// connection.
func refusalResponse(why *refusal) []byte {
	body, _ := json.Marshal(api.ErrorBody{Error: why.msg, Code: api.CodeTooManyConnections})
	body = append(body, '\n')
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
		why.status, http.StatusText(why.status), len(body))
	return append([]byte(head), body...)
}

// writeRefusal waits for the request's headers, sends the answer and
// closes the connection. What follows the answer is read too, so that the
// close does not reset a connection whose request the client is still
// writing.
func writeRefusal(c net.Conn, answer []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refusalTime))
	var (
		head []byte
		buf  [4096]byte
	)
	for !bytes.Contains(head, []byte("\r\n\r\n")) && len(head) < maxHeaderBytes {
		n, err := c.Read(buf[:])
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	if _, err := c.Write(answer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, api.MaxBodyBytes))
}

// listener admits connections through a tracker. Each connection is
// tagged with its peer's credentials, read once at accept.
type listener struct {
	net.Listener
	t *tracker
}

// Accept returns the next admitted connection; refused ones are answered
// and closed on the way.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// The uid decides; the groups, which cost a file read on Linux,
		// are learned only for a connection let in.
		p := peer{}
		cred, err := peercred.GetIDs(c)
		if err == nil {
			p = peer{cred: cred, known: true}
		}
		if why := l.t.admit(p); why != nil {
			l.t.refuse(c, p, why)
			continue
		}
		if err != nil {
			l.t.logf("control socket: %v; the connection gets no rights", err)
		} else {
			p.cred = peercred.AddGroups(p.cred)
		}
		return &conn{Conn: c, peer: p, t: l.t}, nil
	}
}

// conn is an admitted connection. It leaves the count when closed, by the
// server or by whoever took it over (an upgrade).
type conn struct {
	net.Conn
	peer   peer
	t      *tracker
	closed sync.Once
	// own is set while net/http itself may answer: whenever no handler
	// is at work on the connection (from its start, and from the end of
	// each answer, until the next request reaches a handler). What it
	// writes then is one of its plain-text error replies, sent as JSON
	// instead (see jsonReply).
	own atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.t.release(c.peer) })
	return err
}

// CloseWrite half-closes the connection; net/http does so after some
// error replies, so that the client reads them before the close.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) Write(p []byte) (int, error) {
	if c.own.Load() {
		if out, ok := jsonReply(p); ok {
			if _, err := c.Conn.Write(out); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// connState is the http.Server hook of that name. A new connection, and
// one whose answer has been sent (idle), has no handler at work: until a
// request reaches one, any reply is net/http's own. (Active is not
// reported for a request already buffered while the connection was
// idle, so it cannot be relied on alone.)
func connState(c net.Conn, st http.ConnState) {
	cc, ok := c.(*conn)
	if !ok {
		return
	}
	switch st {
	case http.StateNew, http.StateActive, http.StateIdle:
		cc.own.Store(true)
	}
}
