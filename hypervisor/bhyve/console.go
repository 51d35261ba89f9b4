package bhyve

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/internal/ttyconsole"
)

// ConsoleNMDM is the Options.Console that gives the guest's COM1 to the
// daemon through a null-modem pair (nmdm(4)).
const ConsoleNMDM = "nmdm"

// com1Key is the bhyve config key of the guest's first serial port.
const com1Key = "lpc.com1.path"

// nmdmDrain is how long, after bhyve exited, what it wrote last may take
// to cross the pair. nmdm moves bytes in a task of its own, which runs at
// once; the pair does not hang up the daemon's side when bhyve closes its
// own, so waiting longer would only delay every exit.
const nmdmDrain = 250 * time.Millisecond

// NMDMPair returns the two sides of the null-modem pair of the VM name:
// bhyve opens a, the daemon b. The pair is named from the VM, so that a
// new daemon finds it again, and it exists while either side is open
// (opening a side by name makes the pair).
func NMDMPair(name string) (a, b string) {
	base := filepath.Join(nmdmDir, "nmdm-"+name+".")
	return base + "A", base + "B"
}

// nmdmDir is where the pairs are: devfs. Tests put stand-ins elsewhere.
var nmdmDir = "/dev"

// consoleSetting is the generated setting that puts COM1 on the pair.
func consoleSetting(name string) hypervisor.Setting {
	a, _ := NMDMPair(name)
	return hypervisor.Setting{Key: com1Key, Value: a}
}

// openConsole opens the daemon's side of the VM's pair and starts
// reading it into w.
func openConsole(path string, w io.Writer) (*ttyconsole.Console, error) {
	f, err := openNMDM(path)
	if err != nil {
		return nil, err
	}
	return ttyconsole.New(f, nil, w, nil), nil
}

// Console connects to the guest's COM1 (console = nmdm).
func (i *Instance) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	if i.console == nil {
		return nil, fmt.Errorf("%w: vm %s has no console: set console = nmdm in its bhyve section and restart it", hypervisor.ErrNotSupported, i.name)
	}
	c, err := i.console.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("bhyve: vm %s: %w", i.name, err)
	}
	return c, nil
}

// closeConsole closes the daemon's side after bhyve exited, once what
// bhyve wrote last has crossed the pair.
func closeConsole(c *ttyconsole.Console) {
	if c != nil {
		c.CloseAfter(nmdmDrain)
	}
}

var _ hypervisor.Consoler = (*Instance)(nil)
