package process

import (
	"os"
)

// gate holds a Gated process back until Release (see Config.Gated).
type gate interface {
	// open lets the program run.
	open() error
	// drop gives the process up before its program ran: it then runs
	// nothing.
	drop()
}

// pipeGate is the gate that works everywhere: the process starts as a
// small /bin/sh (gateScript) that waits for a word on a pipe and then
// executes the program in its place. Dropping the gate, or the death of
// the daemon that holds it, closes the pipe and the shell exits with 125.
// It costs a second exec at every start.
type pipeGate struct{ w *os.File }

func (g pipeGate) open() error {
	_, err := g.w.Write([]byte("go\n"))
	if cerr := g.w.Close(); err == nil {
		err = cerr
	}
	return err
}

func (g pipeGate) drop() { g.w.Close() }

// gateScript waits for the word on fd 3, closes it and becomes the program
// ($0 with its arguments). Exit status 125 means the gate was never opened.
const gateScript = `read -r go <&3 || exit 125; exec 3<&-; exec "$0" "$@"`
