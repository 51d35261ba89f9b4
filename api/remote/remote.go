// Package remote reaches a vmstated on another host through the user's own
// ssh: the local side starts
//
//	ssh -T [-p port] -- [user@]host vmstatedctl dial-stdio [-s socket]
//
// and the remote side (Splice) connects to the daemon's unix socket and
// copies bytes both ways, so the client speaks the same HTTP as locally
// and the remote daemon sees the ssh user through peer credentials.
//
// Once it has connected to the socket, the remote side writes Banner
// before anything else; the local side reads it before it hands out the
// connection. A process that ends before the banner failed, and its exit
// status says where: ssh itself (255), no vmstatedctl on the remote host
// (127), or the remote daemon not answering (ExitUnreachable).
package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/api"
)

// Banner is the first line the remote side writes once it reached the
// daemon's socket.
const Banner = "vmstated-dial-stdio 1\n"

// ExitUnreachable is the remote side's exit status when the daemon's
// socket does not answer (vmstatedctl's own "unreachable" status).
const ExitUnreachable = 3

// Environment variables the local side reads.
const (
	// EnvSSHCommand replaces "ssh" (split on blanks, no quoting), like
	// GIT_SSH_COMMAND: "ssh -F ~/.ssh/lab_config".
	EnvSSHCommand = "VMSTATED_SSH_COMMAND"
	// EnvRemoteCtl names vmstatedctl on the remote host when it is not on
	// the remote PATH.
	EnvRemoteCtl = "VMSTATED_REMOTE_VMSTATEDCTL"
)

// Target is a parsed ssh://[user@]host[:port][/path/to/socket].
type Target struct {
	User   string
	Host   string
	Port   string
	Socket string // empty: the remote user's default socket
}

// String is the URL form, for messages and the HOST column.
func (t Target) String() string {
	u := url.URL{Scheme: "ssh", Host: t.Host, Path: t.Socket}
	if t.Port != "" {
		u.Host = net.JoinHostPort(t.Host, t.Port)
	}
	if t.User != "" {
		u.User = url.User(t.User)
	}
	return u.String()
}

// Parse reads an ssh:// address.
func Parse(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("host %q: %v; want ssh://[user@]host[:port][/path/to/socket]", s, err)
	}
	if u.Scheme != "ssh" {
		return Target{}, fmt.Errorf("host %q: only ssh:// addresses are supported; want ssh://[user@]host[:port][/path/to/socket]", s)
	}
	if u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("host %q: no query or fragment allowed; want ssh://[user@]host[:port][/path/to/socket]", s)
	}
	t := Target{Host: u.Hostname(), Port: u.Port(), Socket: u.Path}
	if u.User != nil {
		if _, set := u.User.Password(); set {
			return Target{}, fmt.Errorf("host %q: passwords do not go in the address; ssh asks for one, or use a key or agent", s)
		}
		t.User = u.User.Username()
	}
	switch {
	case t.Host == "":
		return Target{}, fmt.Errorf("host %q: no host name", s)
	case strings.HasPrefix(t.Host, "-") || strings.HasPrefix(t.User, "-"):
		return Target{}, fmt.Errorf("host %q: a host or user may not begin with '-'", s)
	case strings.ContainsAny(t.Host+t.User, " \t\n'\"\\"):
		return Target{}, fmt.Errorf("host %q: blanks and quotes are not allowed in the host or user", s)
	}
	if t.Port != "" {
		if n, err := strconv.Atoi(t.Port); err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("host %q: port %q is not a number from 1 to 65535", s, t.Port)
		}
	}
	if t.Socket == "/" {
		t.Socket = ""
	}
	return t, nil
}

// Stage says which part of the path to the remote daemon failed.
type Stage string

// The stages.
const (
	StageSSH    Stage = "ssh"
	StageCtl    Stage = "remote vmstatedctl"
	StageDaemon Stage = "remote daemon"
)

// Error is a failed connection to a remote daemon.
type Error struct {
	Target Target
	Stage  Stage
	// Status is the exit status of the ssh process (-1: it did not run
	// or was killed).
	Status int
	// Detail is what the failing part wrote on stderr (trimmed).
	Detail string
}

func (e *Error) Error() string {
	d := e.Detail
	if d == "" {
		d = fmt.Sprintf("exit status %d", e.Status)
	}
	switch e.Stage {
	case StageSSH:
		return fmt.Sprintf("ssh to %s failed: %s; check that 'ssh %s' works (keys, known_hosts, port)", e.Target, d, e.Target.dest())
	case StageCtl:
		return fmt.Sprintf("vmstatedctl on %s failed: %s; install vmstatedctl there (in the remote PATH, or name it with %s)", e.Target, d, EnvRemoteCtl)
	default:
		return fmt.Sprintf("vmstated on %s cannot be reached: %s; start it there, or name its socket in the address (ssh://host/path/to/socket)", e.Target, d)
	}
}

func (t Target) dest() string {
	if t.User != "" {
		return t.User + "@" + t.Host
	}
	return t.Host
}

// Command is the ssh command line for t (argv). getenv reads EnvSSHCommand
// and EnvRemoteCtl.
func (t Target) Command(getenv func(string) string) []string {
	argv := strings.Fields(getenv(EnvSSHCommand))
	if len(argv) == 0 {
		argv = []string{"ssh"}
	}
	argv = append(argv, "-T")
	if t.Port != "" {
		argv = append(argv, "-p", t.Port)
	}
	ctl := getenv(EnvRemoteCtl)
	if ctl == "" {
		ctl = "vmstatedctl"
	}
	// ssh joins the remote words with blanks for the remote shell, so
	// each is quoted for it.
	remote := shellQuote(ctl) + " dial-stdio"
	if t.Socket != "" {
		remote += " -s " + shellQuote(t.Socket)
	}
	// "--" ends ssh's options: the destination cannot become one.
	return append(argv, "--", t.dest(), remote)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// maxStderr bounds what is kept of the ssh process's stderr.
const maxStderr = 8 << 10

// Dialer starts one ssh process per connection.
type Dialer struct {
	Target Target
	Getenv func(string) string
	// Stderr, when set, also gets what ssh writes after the connection is
	// up (warnings); before that it is kept for the error message.
	Stderr io.Writer
}

// DialContext starts ssh and returns the connection once the remote side
// reached the daemon. The context bounds only the set-up.
func (d *Dialer) DialContext(ctx context.Context) (net.Conn, error) {
	getenv := d.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	argv := d.Target.Command(getenv)
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errb := &boundedBuffer{max: maxStderr}
	cmd := exec.Command(argv[0], argv[1:]...)
	// ssh stays in the terminal's process group: it may have to ask for
	// a passphrase or a host key there. A ^C ends it along with the
	// command.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errb
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, &Error{Target: d.Target, Stage: StageSSH, Status: -1, Detail: err.Error()}
	}
	inR.Close()
	outW.Close()
	c := &conn{cmd: cmd, w: inW, r: outR, stderr: errb, waited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.waited)
	}()
	if err := c.readBanner(ctx); err != nil {
		c.Close()
		return nil, d.classify(c, err)
	}
	errb.forward(d.Stderr)
	return c, nil
}

// classify turns a set-up failure into an *Error.
func (d *Dialer) classify(c *conn, cause error) error {
	select {
	case <-c.waited:
	case <-time.After(5 * time.Second):
	}
	status := -1
	var ee *exec.ExitError
	if errors.As(c.waitErr, &ee) {
		status = ee.ExitCode()
	}
	detail := strings.TrimSpace(c.stderr.String())
	if detail == "" && cause != nil && !errors.Is(cause, io.EOF) {
		detail = cause.Error()
	}
	// Keep the line that says what failed: the last one (ssh prints
	// warnings before it), unless that is a usage line.
	if lines := strings.Split(detail, "\n"); len(lines) > 1 {
		detail = strings.TrimSpace(lines[len(lines)-1])
		if strings.HasPrefix(detail, "usage:") {
			detail = strings.TrimSpace(lines[len(lines)-2])
		}
	}
	detail = strings.TrimPrefix(detail, "vmstatedctl: ")
	e := &Error{Target: d.Target, Status: status, Detail: detail}
	switch {
	case status == 255 || status == -1:
		e.Stage = StageSSH
	case status == ExitUnreachable:
		e.Stage = StageDaemon
	default:
		e.Stage = StageCtl
	}
	return e
}

// conn is the ssh process's stdin and stdout as a net.Conn.
type conn struct {
	cmd     *exec.Cmd
	w       *os.File
	r       *os.File
	br      *bufio.Reader
	stderr  *boundedBuffer
	waited  chan struct{}
	waitErr error
	once    sync.Once
}

func (c *conn) readBanner(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.r.SetReadDeadline(time.Now()) })
	defer stop()
	c.br = bufio.NewReaderSize(c.r, 4096)
	line, err := c.br.ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if line != Banner {
		return fmt.Errorf("unexpected first line %q from the remote side (is it vmstatedctl?)", strings.TrimSpace(line))
	}
	return c.r.SetReadDeadline(time.Time{})
}

func (c *conn) Read(p []byte) (int, error)  { return c.br.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close ends the stream: closing ssh's stdin lets the remote side finish;
// ssh that does not exit soon after is killed.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		select {
		case <-c.waited:
		case <-time.After(2 * time.Second):
			c.cmd.Process.Kill()
			<-c.waited
		}
		c.r.Close()
	})
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return addr("local") }
func (c *conn) RemoteAddr() net.Addr { return addr(c.cmd.Args[len(c.cmd.Args)-2]) }
func (c *conn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	return c.w.SetWriteDeadline(t)
}
func (c *conn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type addr string

func (a addr) Network() string { return "ssh" }
func (a addr) String() string  { return string(a) }

// boundedBuffer keeps the first max bytes of ssh's stderr, or passes them
// on once forward was called.
type boundedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
	fw  io.Writer
	on  bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		if b.fw != nil {
			b.fw.Write(p)
		}
		return len(p), nil
	}
	if room := b.max - len(b.b); room > 0 {
		b.b = append(b.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// forward sends what was kept, and everything after, to w.
func (b *boundedBuffer) forward(w io.Writer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on, b.fw = true, w
	if w != nil && len(b.b) > 0 {
		w.Write(b.b)
	}
	b.b = nil
}

// Splice is the remote side: it connects to the daemon's socket, writes
// Banner to out, then copies in to the socket and the socket to out until
// the daemon closes its side.
func Splice(ctx context.Context, socket string, in io.Reader, out io.Writer) error {
	c, err := api.DialSocket(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(out, Banner); err != nil {
		return err
	}
	uc := c.(*net.UnixConn)
	go func() {
		io.Copy(uc, in)
		// The client is done sending; the daemon still answers.
		uc.CloseWrite()
	}()
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	_, err = io.Copy(out, uc)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
