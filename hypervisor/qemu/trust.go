package qemu

import (
	"fmt"
	"path/filepath"

	"github.com/vmstated/vmstated/trust"
)

// checkBinary applies the trust rule to the QEMU binary a root daemon is
// about to run: it and every directory on its path must be root's.
func checkBinary(bin string) error {
	if !trust.Strict() {
		return nil
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("qemu: binary %s: %w", bin, err)
	}
	p, err := trust.OpenProgram(abs, true)
	if err != nil {
		return fmt.Errorf("%w: qemu binary refused: %w", ErrInvalidOptions, err)
	}
	p.Close()
	return nil
}
