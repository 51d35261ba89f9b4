package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/remote"
)

// Exit statuses of a remote command that did not reach the daemon (the
// remote daemon itself not answering is exitUnreachable, as locally).
const (
	exitSSH       = 4 // ssh failed: connection, host key, authentication
	exitRemoteCtl = 5 // vmstatedctl on the remote host is missing or failed
)

// hostList is the repeatable -H flag.
type hostList struct{ hosts *[]string }

func (h hostList) String() string {
	if h.hosts == nil {
		return ""
	}
	return strings.Join(*h.hosts, ",")
}

func (h hostList) Set(v string) error {
	if _, err := remote.Parse(v); err != nil {
		return err
	}
	*h.hosts = append(*h.hosts, v)
	return nil
}

// socketFlag is -s, noting that it was given (it then wins over
// VMSTATED_HOST).
type socketFlag struct{ e *env }

func (s socketFlag) String() string {
	if s.e == nil {
		return ""
	}
	return s.e.socket
}

func (s socketFlag) Set(v string) error {
	s.e.socket, s.e.socketSet = v, true
	return nil
}

// localCommands work on this host only; VMSTATED_HOST does not apply to
// them (dial-stdio is what -H runs on the remote host).
var localCommands = map[string]bool{"check": true, "dial-stdio": true, "completion": true}

// multiHostCommands take several -H.
var multiHostCommands = map[string]bool{"status": true, "events": true, "stop": true}

// resolveHosts settles where command goes: -H, else VMSTATED_HOST unless
// -s was given, else the local socket.
func (e *env) resolveHosts(command string, getenv func(string) string) error {
	if len(e.hosts) > 0 && e.socketSet {
		return usagef("-s and -H do not go together; put the remote socket in the address: ssh://host/path/to/socket")
	}
	if localCommands[command] {
		if len(e.hosts) > 0 {
			return usagef("%s works on this host only; run it there (ssh host vmstatedctl %s)", command, command)
		}
		return nil
	}
	if len(e.hosts) > 1 && !multiHostCommands[command] {
		return usagef("-H was given %d times; only status, events and stop -a act on several hosts", len(e.hosts))
	}
	if len(e.hosts) == 0 && !e.socketSet {
		if h := getenv("VMSTATED_HOST"); h != "" {
			if err := (hostList{&e.hosts}).Set(h); err != nil {
				return usagef("VMSTATED_HOST: %v", err)
			}
		}
	}
	return nil
}

// newRemoteClient is a client of the daemon behind an ssh:// address.
func newRemoteClient(host string, stderr io.Writer) *api.Client {
	t, _ := remote.Parse(host) // checked when the flag was set
	d := &remote.Dialer{Target: t, Getenv: os.Getenv, Stderr: stderr}
	return api.NewClientDialer(t.String(), d.DialContext)
}

// oneHost refuses several -H for a command that acts on one host.
func (e *env) oneHost() error {
	if len(e.hosts) > 1 {
		return usagef("-H was given %d times; only status, events and stop -a act on several hosts", len(e.hosts))
	}
	return nil
}

// perHost is an env for one of several hosts.
func (e *env) perHost(host string) *env {
	h := *e
	h.hosts = []string{host}
	h.c = nil
	return &h
}

// eachHost runs fn for every host in turn (once, on the local socket or the
// one host, when fewer than two were given) and joins the errors, each
// named by its host, so one unreachable host does not hide the others.
func (e *env) eachHost(fn func(h *env, label string) error) error {
	if len(e.hosts) < 2 {
		return fn(e, "")
	}
	var errs []error
	for _, host := range e.hosts {
		h := e.perHost(host)
		err := fn(h, host)
		if h.c != nil {
			h.c.Close()
		}
		if err != nil {
			errs = append(errs, hostError{host: host, err: err})
		}
	}
	return errors.Join(errs...)
}

// hostError names the host an error came from.
type hostError struct {
	host string
	err  error
}

func (h hostError) Error() string { return h.host + ": " + h.err.Error() }
func (h hostError) Unwrap() error { return h.err }

// lockedWriter serialises whole writes of several hosts' streams.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// remoteExit maps a failed connection to a remote daemon to its message
// and exit status.
func remoteExit(err error) (code string, msg string, status int, ok bool) {
	var re *remote.Error
	if !errors.As(err, &re) {
		return "", "", 0, false
	}
	switch re.Stage {
	case remote.StageSSH:
		return "ssh", re.Error(), exitSSH, true
	case remote.StageCtl:
		return "remote_vmstatedctl", re.Error(), exitRemoteCtl, true
	}
	return "unreachable", re.Error(), exitUnreachable, true
}

// cmdDialStdio is the remote end of -H: it connects to the daemon's
// socket and copies stdin to it and its answers to stdout.
func cmdDialStdio(e *env, args []string) error {
	fs := e.newFlags("dial-stdio")
	if _, err := e.parse(fs, args, 0, 0); err != nil {
		return err
	}
	err := remote.Splice(e.ctx, e.socket, os.Stdin, os.Stdout)
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	// One plain line for the local side to show: the advice about -s
	// would be wrong there.
	fmt.Fprintf(e.stderr, "no daemon answers at %s (%v)\n", e.socket, unwrapOp(err))
	return exitStatus(exitUnreachable)
}

// exitStatus ends a command with that status, its message already shown.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// unwrapOp keeps "connect: no such file or directory" of a dial error.
func unwrapOp(err error) error {
	var op interface{ Unwrap() error }
	if errors.As(err, &op) {
		if inner := op.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// hostStatus is a VM's status with the host it runs on, for several -H
// (-o json: the status fields plus "host").
type hostStatus struct {
	Host string `json:"host"`
	api.Status
}

// hostEvent is an event with its host, for events with several -H.
type hostEvent struct {
	Host string `json:"host"`
	api.Event
}

// prefixWriter starts every line with prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	mid    bool // inside a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// reportHosts reports the errors of a command that ran on several hosts,
// one line per host, and returns the exit status of the first.
func reportHosts(e *env, c *cmd, err error) (int, bool) {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return 0, false
	}
	errs := j.Unwrap()
	for _, x := range errs {
		if _, ok := x.(hostError); !ok {
			return 0, false
		}
	}
	status := exitOK
	for _, x := range errs {
		h := x.(hostError)
		// Each host's error as it would be reported alone, named: a
		// prefix, or with -o json a "host" field.
		var buf bytes.Buffer
		code := report(&env{ctx: e.ctx, stdout: e.stdout, stderr: &buf, output: e.output}, c, h.err)
		var body api.ErrorBody
		if e.json() && json.Unmarshal(buf.Bytes(), &body) == nil {
			writeJSON(e.stderr, struct {
				api.ErrorBody
				Host string `json:"host"`
			}{body, h.host})
		} else {
			(&prefixWriter{w: e.stderr, prefix: h.host + ": "}).Write(buf.Bytes())
		}
		if status == exitOK {
			status = code
		}
	}
	return status, true
}
