//go:build !freebsd && !linux

package bhyve

import (
	"fmt"
	"os"

	"github.com/vmstated/vmstated/hypervisor"
)

// openNMDM: null-modem pairs are FreeBSD's.
func openNMDM(path string) (*os.File, error) {
	return nil, fmt.Errorf("%w: console = nmdm: %s: null-modem pairs (nmdm(4)) exist on FreeBSD only", hypervisor.ErrNotSupported, path)
}
