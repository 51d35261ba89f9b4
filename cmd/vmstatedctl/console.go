package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/term"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/console"
)

// defaultEscape detaches from a console: Ctrl-], as telnet and virsh.
const defaultEscape = "^]"

// errDaemonGone is a console stream that ended without the daemon saying
// why: it exited or was killed.
var errDaemonGone = errors.New("the daemon went away")

func cmdConsole(e *env, args []string) error {
	fs := e.newFlags("console")
	force := fs.Bool("f", false, "take the console over from another client")
	readOnly := fs.Bool("r", false, "attach read-only")
	esc := fs.String("e", defaultEscape, "detach character")
	lines := fs.Int("n", -1, "replay the last lines first (default a screenful)")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *force && *readOnly {
		return usagef("-f takes the console to type into it, -r only watches: choose one")
	}
	mode := api.ConsoleReadWrite
	switch {
	case *force:
		mode = api.ConsoleForce
	case *readOnly:
		mode = api.ConsoleReadOnly
	}
	escape, err := parseEscape(*esc)
	if err != nil {
		return err
	}
	n := *lines
	if n < -1 {
		return usagef("-n %d: want a number of lines, 0 or more", n)
	}
	if n == -1 {
		n = screenRows()
	}
	return e.attachConsole(pos[0], api.ConsoleOptions{Mode: mode, Lines: n}, escape)
}

// parseEscape reads a detach character: one character, or ^X for a
// control character.
func parseEscape(s string) (byte, error) {
	switch {
	case len(s) == 1:
		return s[0], nil
	case len(s) == 2 && s[0] == '^' && s[1] == '?':
		return 0x7f, nil
	case len(s) == 2 && s[0] == '^' && s[1] >= '@' && s[1] <= '_':
		return s[1] - '@', nil
	case len(s) == 2 && s[0] == '^' && s[1] >= 'a' && s[1] <= 'z':
		return s[1] - 'a' + 1, nil
	}
	return 0, usagef("-e %q: want one character, or ^X for Ctrl-X (default %s)", s, defaultEscape)
}

func escapeName(b byte) string {
	switch {
	case b == 0x7f:
		return "^?"
	case b < 0x20:
		return "^" + string(rune(b+'@'))
	}
	return string(rune(b))
}

// screenRows is a screenful of lines: the terminal's height, or 24.
func screenRows() int {
	if _, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil && h > 0 {
		return h
	}
	return 24
}

// attachConsole relays between the terminal and a VM's console until the
// escape character, the end of the session, or the end of the daemon.
func (e *env) attachConsole(name string, opts api.ConsoleOptions, escape byte) error {
	conn, err := e.client().Console(e.ctx, name, opts)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Raw mode, so that every key reaches the guest; restored on every
	// way out of here, including a signal (it cancels e.ctx). Before the
	// greeting: what is typed once it shows goes to the guest alone, not
	// echoed by the terminal too.
	in := int(os.Stdin.Fd())
	eol := "\n"
	if term.IsTerminal(in) {
		old, err := term.MakeRaw(in)
		if err != nil {
			return fmt.Errorf("the terminal cannot be put in raw mode: %w", err)
		}
		defer term.Restore(in, old)
		eol = "\r\n" // raw mode: no carriage return comes with a newline
	}
	fmt.Fprintf(e.stderr, "Connected to the console of %s%s; detach with %s%s", name,
		map[bool]string{true: " (read-only)"}[opts.Mode == api.ConsoleReadOnly], escapeName(escape), eol)

	// Input and window sizes are written from two goroutines.
	var wmu sync.Mutex
	send := func(kind byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return console.WriteFrame(conn, kind, p)
	}
	if opts.Mode != api.ConsoleReadOnly {
		stop := sendWindowSize(send)
		defer stop()
	}

	detached := make(chan struct{})
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := os.Stdin.Read(buf)
			p := buf[:n]
			i := bytes.IndexByte(p, escape)
			if i >= 0 {
				p = p[:i]
			}
			if len(p) > 0 && opts.Mode != api.ConsoleReadOnly {
				if send(console.KindInput, p) != nil {
					return
				}
			}
			if i >= 0 || (err != nil && opts.Mode != api.ConsoleReadOnly) {
				// End of input detaches a writer too: nothing more to
				// type.
				close(detached)
				return
			}
			if err != nil {
				// A watcher types nothing: the end of its input (a
				// script's /dev/null) leaves it watching.
				return
			}
		}
	}()

	frames := make(chan error, 1)
	go func() { frames <- e.readConsole(conn) }()
	var result error
	select {
	case <-detached:
		fmt.Fprint(e.stderr, "\r\n[detached]\r\n")
	case <-e.ctx.Done():
		fmt.Fprint(e.stderr, "\r\n[interrupted]\r\n")
	case result = <-frames:
	}
	if errors.Is(result, errDaemonGone) {
		return fmt.Errorf("%w; the VM keeps running: attach again with 'vmstatedctl console %s' once the daemon is back", errDaemonGone, name)
	}
	return result
}

// sendWindowSize sends the terminal's window size now and whenever it
// changes (SIGWINCH), until the returned function is called. A console
// with a size (an exec VM's terminal) takes it; a serial line drops it.
// Without a terminal there is no size to send.
func sendWindowSize(send func(kind byte, p []byte) error) (stop func()) {
	fd := int(os.Stdout.Fd())
	if !term.IsTerminal(fd) {
		fd = int(os.Stdin.Fd())
	}
	if !term.IsTerminal(fd) {
		return func() {}
	}
	sendSize := func() error {
		cols, rows, err := term.GetSize(fd)
		if err != nil || rows <= 0 || cols <= 0 || rows > 0xffff || cols > 0xffff {
			return nil
		}
		return send(console.KindResize, console.Resize(uint16(rows), uint16(cols)))
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	_ = sendSize()
	go func() {
		for {
			select {
			case <-winch:
				if sendSize() != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
	}
}

// readConsole writes the console's output to stdout and the daemon's
// notices to stderr until the session ends: nil when the VM stopped, an
// error for every other ending.
func (e *env) readConsole(conn io.Reader) error {
	br := bufio.NewReader(conn)
	for {
		kind, p, err := console.ReadFrame(br)
		if err != nil {
			return errDaemonGone
		}
		switch kind {
		case console.KindOutput:
			if _, err := e.stdout.Write(p); err != nil {
				return err
			}
		case console.KindNotice:
			fmt.Fprintf(e.stderr, "\r\n[%s]\r\n", strings.TrimSpace(string(p)))
		case console.KindEnd:
			end := console.ParseEnd(p)
			fmt.Fprintf(e.stderr, "\r\n[%s]\r\n", end.Message)
			if end.Code == console.EndStopped {
				return nil
			}
			return end
		}
	}
}

func cmdVNC(e *env, args []string) error {
	fs := e.newFlags("vnc")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	info, err := e.client().Info(e.ctx, pos[0])
	if err != nil {
		return err
	}
	addr, _ := info["vnc_address"].(string)
	if addr == "" {
		return fmt.Errorf("vm %s has no VNC address: set vnc = auto (and vga = std) in its qemu section and restart it", pos[0])
	}
	pw, _ := info["vnc_password"].(string)
	if e.json() {
		out := map[string]string{"vm": pos[0], "address": addr}
		if pw != "" {
			out["password"] = pw
		}
		writeJSON(e.stdout, out)
		return nil
	}
	// The address alone on the first line, for scripts.
	fmt.Fprintln(e.stdout, addr)
	if pw != "" {
		fmt.Fprintln(e.stdout, "password: "+pw)
	}
	return nil
}
