package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/process"
	"github.com/vmstated/vmstated/hypervisor/qemu/qmp"
)

// The names under which the save and restore descriptors are handed to
// QEMU (getfd), for the fd: migration URI.
const (
	saveFD    = "vmstated-save"
	restoreFD = "vmstated-restore"
)

// migratePoll is how often query-migrate is asked during a save or a
// restore, once it has run a while; the first looks come sooner (from
// migratePollFirst, doubling), since a small guest is saved in tens of
// milliseconds.
const (
	migratePoll      = 50 * time.Millisecond
	migratePollFirst = 2 * time.Millisecond
)

// nextPoll is the delay after d.
func nextPoll(d time.Duration) time.Duration { return min(2*d, migratePoll) }

// saveStall is how long a save may go without writing anything before it
// is given up (cancelled, the guest left paused for the caller to resume):
// a state directory that blocks must not hold the VM in suspending for
// ever.
const saveStall = 60 * time.Second

// saveBandwidth lifts QEMU's migration speed limit (32 MiB/s by default,
// meant for a guest that runs on): the guest is paused, so nothing gains
// from a slower save.
const saveBandwidth = 1 << 40

// migrateStatus is what query-migrate answers that a save needs.
type migrateStatus struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	RAM       *struct {
		Transferred uint64 `json:"transferred"`
		Total       uint64 `json:"total"`
		Remaining   uint64 `json:"remaining"`
	} `json:"ram"`
}

// Save pauses the guest and migrates it into f. QEMU gets the descriptor
// itself (getfd, then the fd: URI): it runs sandboxed, with spawn=deny, so
// an exec: URI could not work, and it may run as another user, who need
// not be able to open anything in the state directory.
func (i *instance) Save(ctx context.Context, f *os.File, progress func(hypervisor.SaveProgress)) error {
	c, err := i.client()
	if err != nil {
		return err
	}
	if err := i.command(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("qemu: pausing the guest: %w", err)
	}
	if err := i.command(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": saveBandwidth}, nil); err != nil {
		return fmt.Errorf("qemu: setting the save speed: %w", err)
	}
	if _, err := c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": saveFD}, f); err != nil {
		return fmt.Errorf("qemu: passing the save file: %w", err)
	}
	if err := i.command(ctx, "migrate", map[string]string{"uri": "fd:" + saveFD}, nil); err != nil {
		return fmt.Errorf("qemu: migrate: %w", err)
	}
	var written uint64
	moved := time.Now()
	for delay := migratePollFirst; ; delay = nextPoll(delay) {
		var st migrateStatus
		if err := i.command(ctx, "query-migrate", nil, &st); err != nil {
			return fmt.Errorf("qemu: query-migrate: %w", err)
		}
		if st.RAM != nil && st.RAM.Transferred != written {
			written, moved = st.RAM.Transferred, time.Now()
		}
		if st.Status != "completed" && time.Since(moved) > saveStall {
			_ = i.command(ctx, "migrate_cancel", nil, nil)
			return fmt.Errorf("qemu: saving the guest wrote nothing for %s (is the state directory's disk full or hung?); cancelled", saveStall)
		}
		if progress != nil {
			p := hypervisor.SaveProgress{Status: st.Status}
			if st.RAM != nil {
				p.Transferred, p.Total, p.Remaining = st.RAM.Transferred, st.RAM.Total, st.RAM.Remaining
			}
			progress(p)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			why := st.ErrorDesc
			if why == "" {
				why = "no reason given"
			}
			return fmt.Errorf("qemu: saving the guest %s: %s", st.Status, why)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-i.done:
			t.Stop()
			return fmt.Errorf("qemu: saving the guest: %w", hypervisor.ErrExited)
		case <-t.C:
		}
	}
}

// CancelSave cancels a migration still in progress and waits until QEMU
// has let go of it.
func (i *instance) CancelSave(ctx context.Context) error {
	if err := i.command(ctx, "migrate_cancel", nil, nil); err != nil {
		return fmt.Errorf("qemu: migrate_cancel: %w", err)
	}
	for {
		var st migrateStatus
		if err := i.command(ctx, "query-migrate", nil, &st); err != nil {
			return fmt.Errorf("qemu: query-migrate: %w", err)
		}
		switch st.Status {
		case "setup", "active", "cancelling", "device", "pre-switchover":
		default:
			return nil
		}
		t := time.NewTimer(migratePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// SavedBy names the QEMU version that answers on QMP.
func (i *instance) SavedBy() string {
	c, err := i.client()
	if err != nil {
		return DriverName
	}
	return DriverName + " " + c.Greeting().Version.String()
}

// Restore starts QEMU waiting for an incoming migration and feeds it f.
func (d *Driver) Restore(ctx context.Context, spec hypervisor.Spec, f *os.File) (hypervisor.Instance, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: Restore needs a file", ErrInvalidOptions)
	}
	return d.start(ctx, spec, f)
}

// Compat is the QEMU version the binary reports and a digest of the
// command line Start would run, with the run directory's paths taken out:
// what QEMU checks a migration stream against is the hardware that
// command line builds.
func (d *Driver) Compat(ctx context.Context, spec hypervisor.Spec) (string, string, error) {
	o, err := options(spec)
	if err != nil {
		return "", "", err
	}
	v, err := cachedVersion(ctx, o.Binary)
	if err != nil {
		return "", "", err
	}
	_, args, err := CommandLine(spec)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	for _, a := range args {
		if spec.RunDir != "" {
			a = strings.ReplaceAll(a, spec.RunDir, "$RUNDIR")
		}
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	return DriverName + " " + v, hex.EncodeToString(h.Sum(nil)), nil
}

// versions caches what `qemu --version` printed, by binary and its file's
// identity (an upgrade replaces the file): asking runs QEMU, which costs
// tens of milliseconds on every suspend.
var versions struct {
	sync.Mutex
	m map[string]string
}

func cachedVersion(ctx context.Context, binary string) (string, error) {
	if binary == "" {
		binary = DefaultBinary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("qemu: binary %q not found: %w", binary, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano())
	versions.Lock()
	v, ok := versions.m[key]
	versions.Unlock()
	if ok {
		return v, nil
	}
	v, err = Version(ctx, path)
	if err != nil {
		return "", err
	}
	versions.Lock()
	if versions.m == nil {
		versions.m = map[string]string{}
	}
	versions.m[key] = v
	versions.Unlock()
	return v, nil
}

// restore loads the state from f into a QEMU started with -incoming defer
// and lets the guest run on. QEMU ends itself when the state does not fit
// the VM it was started as; that shows as errExited.
func restore(ctx context.Context, c *qmp.Client, proc *process.Process, f *os.File) error {
	if _, err := c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": restoreFD}, f); err != nil {
		return exitedOr(proc, fmt.Errorf("passing the save file: %w", err))
	}
	if err := c.Run(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + restoreFD}, nil); err != nil {
		return exitedOr(proc, fmt.Errorf("migrate-incoming: %w", err))
	}
	for delay := migratePollFirst; ; delay = nextPoll(delay) {
		var st migrateStatus
		if err := c.Run(ctx, "query-migrate", nil, &st); err != nil {
			return exitedOr(proc, fmt.Errorf("query-migrate: %w", err))
		}
		switch st.Status {
		case "completed":
			// The guest was paused when it was saved, and comes back so.
			if err := c.Run(ctx, "cont", nil, nil); err != nil {
				return exitedOr(proc, fmt.Errorf("cont: %w", err))
			}
			return nil
		case "failed", "cancelled":
			why := st.ErrorDesc
			if why == "" {
				why = "no reason given"
			}
			return exitedOr(proc, fmt.Errorf("loading the state %s: %s", st.Status, why))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-proc.Done():
			t.Stop()
			return errExited
		case <-t.C:
		}
	}
}

// exitedOr returns errExited when QEMU has ended (or ends within a moment:
// a failed load makes it exit, and the QMP socket closes first), else err.
func exitedOr(proc *process.Process, err error) error {
	if !errors.Is(err, qmp.ErrClosed) {
		select {
		case <-proc.Done():
			return errExited
		default:
			return err
		}
	}
	select {
	case <-proc.Done():
		return errExited
	case <-time.After(closedExitWait):
		return err
	}
}

// restoreError describes QEMU ending while it loaded a saved state, in
// QEMU's words.
func restoreError(proc *process.Process, output string, from int64) error {
	err := startError(proc, output, from)
	msg := strings.Replace(err.Error(), "during start", "while loading the saved state", 1)
	return errors.New(msg)
}

var (
	_ hypervisor.Suspender     = (*instance)(nil)
	_ hypervisor.SaveCanceller = (*instance)(nil)
	_ hypervisor.Restorer      = (*Driver)(nil)
)
