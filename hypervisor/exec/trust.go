package exec

import (
	"fmt"
	osexec "os/exec"
	"path/filepath"
	"strings"

	"github.com/vmstated/vmstated/trust"
)

// checkProgram applies the trust rule to the program a root daemon is
// about to run. The config's load checked it too, but a directory on its
// path may have been handed to a user since, and nothing in the VM's
// directory changes then to make the daemon load the config again.
func checkProgram(prog string) error {
	if !trust.Strict() {
		return nil
	}
	path := prog
	if !strings.Contains(prog, "/") {
		p, err := osexec.LookPath(prog)
		if err != nil {
			// process.Start reports a program that is not there.
			return nil
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("exec: program %s: %w", prog, err)
	}
	p, err := trust.OpenProgram(abs, true)
	if err != nil {
		if trust.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("%w: program refused: %w", ErrBadOptions, err)
	}
	p.Close()
	return nil
}
