package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/vmstated/vmstated/api"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the operation failed
	exitUsage       = 2 // bad command line
	exitUnreachable = 3 // no daemon answers on the socket
)

// env is what every command gets: the streams, the global flags and a
// client made on first use.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	socket         string
	output         string // "table" or "json"
	c              *api.Client
	// flags is the flag set the command made last (see commandFlags).
	flags *flag.FlagSet
}

func (e *env) client() *api.Client {
	if e.c == nil {
		e.c = api.NewClient(e.socket)
	}
	return e.c
}

func (e *env) json() bool { return e.output == "json" }

// usageError is a bad command line: exit 2.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// cmd is one command of vmstatedctl.
type cmd struct {
	name    string
	aliases []string
	args    string // the synopsis after the name
	summary string
	hidden  bool
	// vmArg says which positional arguments are VM names (for
	// completion): 1 = the first.
	vmArg int
	// run makes its flag set with e.newFlags and parses it before it
	// acts: completion learns a command's flags by running it with -h
	// (see commandFlags).
	run func(e *env, args []string) error
}

var commands []*cmd

func findCmd(name string) *cmd {
	for _, c := range commands {
		if c.name == name {
			return c
		}
		for _, a := range c.aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

const globalUsage = "usage: vmstatedctl [-h] [-s sockpath] [-o table|json] command [flags] [vmname]"

// run runs one vmstatedctl command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, socket: hostDefaultSocket(), output: "table"}
	defer func() {
		if e.c != nil {
			e.c.Close()
		}
	}()
	help := new(bool)
	fs := e.globalFlags(help)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "vmstatedctl: %v\n%s\n", err, globalUsage)
		return exitUsage
	}
	rest := fs.Args()
	if *help {
		printHelp(stdout)
		return exitOK
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "vmstatedctl: no command given; 'vmstatedctl help' lists them\n%s\n", globalUsage)
		return exitUsage
	}
	c := findCmd(rest[0])
	if c == nil {
		msg := fmt.Sprintf("vmstatedctl: unknown command %q; 'vmstatedctl help' lists the commands", rest[0])
		if s := suggestCmd(rest[0]); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		fmt.Fprintln(stderr, msg)
		return exitUsage
	}
	if err := checkOutput(e.output); err != nil {
		return report(e, c, err)
	}
	return report(e, c, c.run(e, rest[1:]))
}

// globalFlags is the flag set of the words before the command; -h sets
// help.
func (e *env) globalFlags(help *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("vmstatedctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(help, "h", false, "show help")
	fs.StringVar(&e.socket, "s", e.socket, "daemon socket")
	fs.StringVar(&e.output, "o", e.output, "output format: table or json")
	return fs
}

// outputFormats are the values of -o.
var outputFormats = []string{"table", "json"}

func checkOutput(o string) error {
	if !slices.Contains(outputFormats, o) {
		return usagef("-o %s: want table or json", o)
	}
	return nil
}

// report prints err (if any) as one line and returns the exit status.
func report(e *env, c *cmd, err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		printCmdHelp(e.stdout, c)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "vmstatedctl %s: %s\nusage: vmstatedctl %s %s\n", c.name, ue.msg, c.name, c.args)
		return exitUsage
	case errors.Is(err, api.ErrUnreachable):
		var ur *api.UnreachableError
		msg := err.Error()
		if errors.As(err, &ur) {
			msg = fmt.Sprintf("cannot reach vmstated at %s (%v): start the daemon with 'vmstated', or name its socket with -s or VMSTATED_SOCKET", ur.Socket, ur.Err)
			if errors.Is(ur.Err, syscall.EACCES) {
				msg = fmt.Sprintf("cannot reach vmstated at %s: permission denied; that daemon belongs to another user: name your own daemon's socket with -s, or ask its owner", ur.Socket)
			}
		}
		printErr(e, "unreachable", msg)
		return exitUnreachable
	case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
		printErr(e, "interrupted", "interrupted")
		return exitFailed
	}
	code := "failed"
	var ae *api.Error
	if errors.As(err, &ae) {
		code = ae.Code
	}
	printErr(e, code, oneLine(err.Error()))
	return exitFailed
}

func printErr(e *env, code, msg string) {
	if e.json() {
		writeJSON(e.stderr, api.ErrorBody{Error: msg, Code: code})
		return
	}
	fmt.Fprintf(e.stderr, "vmstatedctl: %s\n", msg)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// parseFlags parses a command's flags, which may come before, between or
// after its positional arguments, and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlags returns a command's flag set, with the global -s and -o
// accepted there too.
func (e *env) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.socket, "s", e.socket, "daemon socket")
	fs.StringVar(&e.output, "o", e.output, "output format")
	e.flags = fs
	return fs
}

// parse parses flags and checks the number of positional arguments.
func (e *env) parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if err := checkOutput(e.output); err != nil {
		return nil, err
	}
	switch {
	case len(pos) < min && min == 1:
		return nil, usagef("name a VM ('vmstatedctl status' lists them)")
	case len(pos) < min:
		return nil, usagef("too few arguments")
	case max >= 0 && len(pos) > max:
		return nil, usagef("unexpected argument %q", pos[max])
	}
	return pos, nil
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, globalUsage)
	fmt.Fprintln(w, `
Controls vmstated, the VM supervisor, over its unix socket.

global flags:
  -s sockpath   daemon socket (default: $VMSTATED_SOCKET, else /run/vmstated.sock
                for root, $XDG_RUNTIME_DIR/vmstated/vmstated.sock for others)
  -o table|json output for people (default) or for programs
  -h            this help

commands:`)
	for _, c := range commands {
		if c.hidden {
			continue
		}
		syn := c.name + " " + c.args
		if len(c.aliases) > 0 {
			syn += " (also: " + strings.Join(c.aliases, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-44s %s\n", syn, c.summary)
	}
	fmt.Fprintln(w, `
exit status: 0 success, 1 the operation failed, 2 usage error,
3 the daemon cannot be reached.
'vmstatedctl help command' or 'vmstatedctl command -h' describes one command.`)
}

func printCmdHelp(w io.Writer, c *cmd) {
	fmt.Fprintf(w, "usage: vmstatedctl %s %s\n\n%s\n", c.name, c.args, c.summary)
	if h := cmdDetails[c.name]; h != "" {
		fmt.Fprintf(w, "\n%s\n", h)
	}
}

func suggestCmd(s string) string {
	best, bestD := "", 3
	names := []string{}
	for _, c := range commands {
		if !c.hidden {
			names = append(names, c.name)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, s) {
			return n
		}
	}
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
