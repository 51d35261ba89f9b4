package main

import (
	"context"
	"fmt"
	"github.com/vmstated/vmstated/api"
	"io"
	"strings"
	"time"
)

const bashCompletion = `# bash completion for vmstatedctl; load with:
#   source <(vmstatedctl completion bash)
_vmstatedctl() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$(vmstatedctl __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "$cur"))
}
complete -o default -F _vmstatedctl vmstatedctl
`

const zshCompletion = `#compdef vmstatedctl
# zsh completion for vmstatedctl; load with:
#   source <(vmstatedctl completion zsh)
# or save as _vmstatedctl in a directory of $fpath.
_vmstatedctl() {
    local -a cands
    cands=("${(@f)$(vmstatedctl __complete "${(@)words[2,CURRENT-1]}" 2>/dev/null)}")
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

// cmdComplete prints the candidates for the word after args (the words
// typed so far, without the program name), one per line. It never fails:
// no daemon just means no VM names.
func cmdComplete(e *env, args []string) error {
	// Skip the global flags, noting -s.
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		f := args[i]
		i++
		if (f == "-s" || f == "-o" || f == "-H") && i < len(args) {
			if f == "-s" {
				e.socket = args[i]
			}
			i++
		} else if v, ok := strings.CutPrefix(f, "-s="); ok {
			e.socket = v
		}
	}
	if i >= len(args) {
		for _, c := range commands {
			if !c.hidden {
				fmt.Fprintln(e.stdout, c.name)
				for _, a := range c.aliases {
					fmt.Fprintln(e.stdout, a)
				}
			}
		}
		return nil
	}
	c := findCmd(args[i])
	if c == nil {
		return nil
	}
	// Count the positional words after the command (flags with a value
	// take the next word).
	npos := 0
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		w := rest[j]
		if strings.HasPrefix(w, "-") && len(w) > 1 {
			if takesValue(w) {
				j++
			}
			continue
		}
		npos++
	}
	switch {
	case c.name == "completion" && npos == 0:
		fmt.Fprintln(e.stdout, "bash")
		fmt.Fprintln(e.stdout, "zsh")
	case c.name == "help" && npos == 0:
		for _, k := range commands {
			if !k.hidden {
				fmt.Fprintln(e.stdout, k.name)
			}
		}
	case c.name == "wait" && npos == 1:
		for _, s := range api.States {
			fmt.Fprintln(e.stdout, s)
		}
	case c.vmArg == npos+1:
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		defer cancel()
		list, err := e.client().List(ctx)
		if err != nil {
			return nil
		}
		for _, st := range list {
			fmt.Fprintln(e.stdout, st.Name)
		}
	}
	return nil
}

// takesValue reports whether a command flag consumes the next word.
func takesValue(f string) bool {
	if strings.Contains(f, "=") {
		return false
	}
	switch strings.TrimLeft(f, "-") {
	case "s", "o", "t", "n", "c", "after":
		return true
	}
	return false
}
