package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmstated/vmstated/statemachine"
)

// The scripts hand every word after the program name, up to and with the
// one being completed (perhaps empty), to "vmstatedctl __complete", and
// offer what it prints, one candidate a line; when it prints nothing, the
// shell completes file names (a socket path, a config directory, the file
// of screenshot).
const bashCompletion = `# bash completion for vmstatedctl; load with:
#   source <(vmstatedctl completion bash)
_vmstatedctl() {
    local IFS=$'\n'
    COMPREPLY=($(vmstatedctl __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _vmstatedctl vmstatedctl
`

const zshCompletion = `#compdef vmstatedctl
# zsh completion for vmstatedctl; load with:
#   source <(vmstatedctl completion zsh)
# or save as _vmstatedctl in a directory of $fpath.
_vmstatedctl() {
    local -a cands
    cands=("${(@f)$(vmstatedctl __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ -n ${cands[1]} ]]; then
        compadd -a cands
    else
        _files
    fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _vmstatedctl "$@"
else
    compdef _vmstatedctl vmstatedctl
fi
`

func cmdCompletion(e *env, args []string) error {
	fs := e.newFlags("completion")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "bash":
		_, err = io.WriteString(e.stdout, bashCompletion)
	case "zsh":
		_, err = io.WriteString(e.stdout, zshCompletion)
	default:
		return usagef("no completion for %q; choose bash or zsh", pos[0])
	}
	return err
}

// cmdComplete prints the candidates for the last of args (the word being
// completed, perhaps empty), given the words before it, one per line, those
// that start with it. It never fails: no daemon just means no VM names.
// Flags and whether they take a value come from the flag sets themselves,
// so a new flag completes without a word here.
func cmdComplete(e *env, args []string) error {
	if len(args) == 0 {
		args = []string{""}
	}
	words, cur := args[:len(args)-1], args[len(args)-1]
	offer := func(cands ...string) {
		for _, c := range cands {
			if strings.HasPrefix(c, cur) {
				fmt.Fprintln(e.stdout, c)
			}
		}
	}
	global := e.globalFlags(new(bool))
	i, pending := skipFlags(global, words)
	if pending != nil {
		offer(flagValues(pending)...)
		return nil
	}
	if i >= len(words) {
		if strings.HasPrefix(cur, "-") {
			offer(flagNames(global)...)
			return nil
		}
		for _, c := range commands {
			if !c.hidden {
				offer(c.name)
				offer(c.aliases...)
			}
		}
		return nil
	}
	c := findCmd(words[i])
	if c == nil || c.hidden {
		return nil
	}
	probe := commandFlags(c, e.socket)
	fs := probe.flags
	if fs == nil {
		fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	}
	// Count the positional words after the command; a flag's value is
	// not one. Reading them also sets -s when given after the command.
	npos := 0
	rest := words[i+1:]
	for len(rest) > 0 {
		n, p := skipFlags(fs, rest)
		if p != nil {
			offer(flagValues(p)...)
			return nil
		}
		rest = rest[n:]
		if len(rest) > 0 {
			npos++
			rest = rest[1:]
		}
	}
	e.socket = probe.socket
	if strings.HasPrefix(cur, "-") {
		offer(flagNames(fs)...)
		return nil
	}
	switch {
	case c.name == "completion" && npos == 0:
		offer("bash", "zsh")
	case c.name == "help" && npos == 0:
		for _, k := range commands {
			if !k.hidden {
				offer(k.name)
			}
		}
	case c.name == "wait" && npos == 1:
		for _, s := range statemachine.States {
			offer(string(s))
		}
	case c.vmArg == npos+1:
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		defer cancel()
		list, err := e.client().List(ctx)
		if err != nil {
			return nil
		}
		for _, st := range list {
			offer(st.Name)
		}
	}
	return nil
}

// commandFlags returns an env whose flags are the flag set command c
// parses (nil when it has none), bound to the env's fields, socket first
// set to socket: c runs with -h against an env that writes nowhere, and
// stops at its flags (every command parses before it acts).
func commandFlags(c *cmd, socket string) *env {
	probe := &env{ctx: context.Background(), stdout: io.Discard, stderr: io.Discard, socket: socket, output: "table"}
	if err := c.run(probe, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		probe.flags = nil
	}
	return probe
}

// skipFlags reads the flags at the start of words as fs would, setting
// their values, and returns how many words they take. pending is a flag
// that wants a value and is the last word: the word being completed is
// its value.
func skipFlags(fs *flag.FlagSet, words []string) (n int, pending *flag.Flag) {
	for n < len(words) {
		w := words[n]
		if w == "--" {
			return n + 1, nil
		}
		if len(w) < 2 || w[0] != '-' {
			return n, nil
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
		f := fs.Lookup(name)
		n++
		switch {
		case f == nil || isBoolFlag(f):
		case hasVal:
			_ = f.Value.Set(val)
		case n == len(words):
			return n, f
		default:
			_ = f.Value.Set(words[n])
			n++
		}
	}
	return n, nil
}

// isBoolFlag reports whether f is set by its name alone, the flag
// package's own test.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagNames lists fs's flags as typed: -name.
func flagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, "-"+f.Name) })
	return out
}

// flagValues lists the values a flag can take where there is a short list;
// none means the shell offers file names.
func flagValues(f *flag.Flag) []string {
	if f.Name == "o" {
		return outputFormats
	}
	return nil
}
