package qemu

import (
	"context"
	"fmt"
	"io"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
)

// captures follow the files QEMU writes in the run directory: its own
// stdout and stderr into Spec.Output, the serial console's log into
// Spec.Console. Each follower resumes where the last daemon stopped and
// gives back what it copied, so nothing is lost or kept twice.
type captures []*process.Follower

// startCaptures follows p's output files. fresh says no QEMU writes them
// yet (a start, not a re-adoption): a file copied to its end is emptied
// first, so even its size starts again.
func startCaptures(spec hypervisor.Spec, p runPaths, serial, fresh bool) (captures, error) {
	var cs captures
	follow := func(path string, w io.Writer) error {
		if w == nil {
			return nil
		}
		if fresh {
			// Best effort: a file left as it is still gets followed and
			// trimmed, it only keeps its size.
			_ = process.TruncateCopied(path)
		}
		fl, err := process.Follow(context.Background(), path, w)
		if err != nil {
			return err
		}
		cs = append(cs, fl)
		return nil
	}
	if err := follow(p.Output, spec.Output); err != nil {
		return nil, fmt.Errorf("qemu: following output: %w", err)
	}
	if serial {
		if err := follow(p.Console, spec.Console); err != nil {
			cs.stop()
			return nil, fmt.Errorf("qemu: following the serial console log: %w", err)
		}
	}
	return cs, nil
}

// stop copies what the files hold and stops following them.
func (cs captures) stop() {
	for _, fl := range cs {
		fl.Stop()
	}
}
