package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/savefile"
	"github.com/vmstated/vmstated/statemachine"
)

// ErrBadStream is matched by the error of a received stream that is not a
// whole saved guest fit for the VM; nothing was restored.
var ErrBadStream = errors.New("the stream cannot be restored")

// opReceive puts a received saved guest in place and starts the VM from
// it; it is the supervisor's own command, not the user's.
const opReceive statemachine.Event = "receive"

// receiveSlack is what a saved guest may hold beyond its memory (device
// state, the header).
const receiveSlack = 256 << 20

// OpenSaved opens a suspended VM's saved guest, to send it; the caller
// closes it. It returns the file's size too. Until it is closed the VM
// is not started here: the guest would run on this host and on the one
// the stream goes to.
func (s *Supervisor) OpenSaved(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	v, err := s.lookup(name)
	if err != nil {
		return nil, 0, err
	}
	var state statemachine.State
	var held bool
	peek := inspect{fn: func() {
		state = v.m.State()
		if state == statemachine.Suspended && v.guestSave != nil && len(v.waitingFor) == 0 {
			v.sending.Add(1)
			held = true
		}
	}, done: make(chan struct{})}
	if err := v.send(ctx, peek); err != nil {
		return nil, 0, err
	}
	select {
	case <-peek.done:
	case <-v.done:
		return nil, 0, ErrShuttingDown
	case <-ctx.Done():
		// Whether the actor took it or not, the hold it may take is
		// given back once it has.
		go func() {
			select {
			case <-peek.done:
				if held {
					v.sending.Add(-1)
				}
			case <-v.done:
			}
		}()
		return nil, 0, ctx.Err()
	}
	if !held {
		if state == statemachine.Suspended {
			return nil, 0, fmt.Errorf("%w: %s is starting from its saved guest, which cannot be sent now", statemachine.ErrNotAllowed, name)
		}
		return nil, 0, fmt.Errorf("%w: %s is %s, not suspended, so it has no saved guest to send; 'vmstatedctl send' suspends a running VM first", statemachine.ErrNotAllowed, name, state)
	}
	f, err := os.Open(s.savePath(name))
	if err != nil {
		v.sending.Add(-1)
		return nil, 0, fmt.Errorf("saved guest of %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		v.sending.Add(-1)
		return nil, 0, err
	}
	return &sendingFile{File: f, v: v}, fi.Size(), nil
}

// sendingFile is a saved guest being sent; closing it lets the VM start
// again.
type sendingFile struct {
	*os.File
	v    *vm
	once sync.Once
}

func (f *sendingFile) Close() error {
	err := f.File.Close()
	f.once.Do(func() { f.v.sending.Add(-1) })
	return err
}

// ConfinedUser returns the account that the hypervisor of name drops to
// once set up ("" when it keeps the daemon's user): a received stream is
// parsed by that process, so who may send one depends on it.
func (s *Supervisor) ConfinedUser(ctx context.Context, name string) (string, error) {
	v, err := s.lookup(name)
	if err != nil {
		return "", err
	}
	var user string
	peek := inspect{fn: func() {
		if v.cfg != nil {
			if o, ok := v.cfg.spec.Options.(*qemu.Options); ok && o != nil {
				user = o.User
			}
		}
	}, done: make(chan struct{})}
	if err := v.send(ctx, peek); err != nil {
		return "", err
	}
	select {
	case <-peek.done:
		return user, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Receive reads a saved guest that send wrote (header, state, trailer)
// into the state directory of the stopped VM name, then starts the VM
// from it. The header must name this VM and match what this host would
// restore it with (hypervisor version, virtual hardware), and the stream
// must arrive whole; otherwise nothing is restored, the VM stays stopped,
// and the error wraps ErrBadStream.
func (s *Supervisor) Receive(ctx context.Context, name string, r io.Reader) error {
	v, err := s.lookup(name)
	if err != nil {
		return err
	}
	if s.stateDir == "" {
		return fmt.Errorf("cannot receive %s: the daemon runs without a state directory (-S) to keep the guest in", name)
	}
	var cfg *settings
	var state statemachine.State
	peek := inspect{fn: func() { cfg, state = v.cfg, v.m.State() }, done: make(chan struct{})}
	if err := v.send(ctx, peek); err != nil {
		return err
	}
	select {
	case <-peek.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if state != statemachine.Stopped {
		return &statemachine.NotAllowedError{VM: name, Event: opReceive, State: state}
	}
	if cfg == nil {
		return fmt.Errorf("%w: %s has no valid config: %s", ErrInvalidConfig, name, v.status.Load().ConfigError)
	}
	rs, ok := s.drivers[cfg.driver].(hypervisor.Restorer)
	if !ok {
		return fmt.Errorf("%w: the %s driver cannot restore a saved guest (vm %s)", hypervisor.ErrNotSupported, cfg.driver, name)
	}
	by, digest, err := rs.Compat(ctx, v.specFor(cfg))
	if err != nil {
		return fmt.Errorf("receive %s: %w", name, err)
	}

	if !v.receiving.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: a stream is already being received into %s; wait until that receive has ended", statemachine.ErrNotAllowed, name)
	}
	defer v.receiving.Store(false)
	tmp := s.receiveTemp(name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("receive %s: %w", name, err)
	}
	placed := false
	defer func() {
		f.Close()
		if !placed {
			os.Remove(tmp)
		}
	}()
	out := &fileWriter{f: f}
	ver := savefile.NewVerifier(out)
	limit := cfg.spec.MemoryMB<<20*2 + receiveSlack
	// The host's own failure to keep the stream is not the stream's
	// fault: it says so, and where to make room.
	hostErr := func() error {
		return fmt.Errorf("receive %s: keeping the stream in the state directory: %w; nothing was restored: make room in %s (up to %d MiB for this VM) and send it again", name, out.err, s.stateDir, limit>>20)
	}
	in := io.LimitReader(r, limit+1)
	h, err := savefile.Read(io.TeeReader(in, ver))
	if err != nil {
		if out.err != nil {
			return hostErr()
		}
		return fmt.Errorf("%w: %v", ErrBadStream, err)
	}
	switch {
	case h.Name != name:
		err = fmt.Errorf("it holds VM %q, not %s", h.Name, name)
	case h.Hypervisor != cfg.driver:
		err = fmt.Errorf("it was saved by hypervisor %s, and %s here is a %s VM", h.Hypervisor, name, cfg.driver)
	case h.SavedBy != by:
		err = fmt.Errorf("it was saved by %s, and this host would restore it with %s; install the same version", h.SavedBy, by)
	case h.ConfigDigest != digest:
		err = fmt.Errorf("the VM's virtual hardware differs between the hosts (config digest %.12s there, %.12s here): give %s the same config (memory, CPUs, machine, devices) on both", h.ConfigDigest, digest, name)
	}
	if err != nil {
		return fmt.Errorf("%w: %v; nothing was restored", ErrBadStream, err)
	}
	n, err := io.Copy(ver, in)
	if err != nil {
		if out.err != nil {
			return hostErr()
		}
		return fmt.Errorf("%w: reading the stream: %v; nothing was restored", ErrBadStream, err)
	}
	if n >= limit {
		return fmt.Errorf("%w: the stream is larger than a saved guest of %s (%d MiB of memory) can be; nothing was restored", ErrBadStream, name, cfg.spec.MemoryMB)
	}
	if err := ver.Check(); err != nil {
		return fmt.Errorf("%w: %v; nothing was restored", ErrBadStream, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("receive %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	err = v.do(ctx, command{op: opReceive, received: &received{tmp: tmp,
		saved: &SavedState{Size: fi.Size(), Time: h.Time, SavedBy: h.SavedBy}}})
	placed = err == nil
	return err
}

// fileWriter writes to f and keeps the first error, so that a failed
// write to the state directory is told from a failed read of the stream.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// receiveTemp is where a received stream is written before it is whole
// and checked.
func (s *Supervisor) receiveTemp(name string) string { return s.saveTemp(name) + ".recv" }

// sweepPartialSaves removes the files of saves and receives that an
// earlier daemon had not finished when it ended: only the daemon that
// began one writes it, a killed one leaves it behind as large as the
// guest, and no later step uses it (a save file is renamed into place
// only once whole).
func (s *Supervisor) sweepPartialSaves() {
	if s.stateDir == "" {
		return
	}
	entries, _ := os.ReadDir(s.stateDir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".save.tmp") && !strings.HasSuffix(n, ".save.tmp.recv") {
			continue
		}
		m := filepath.Join(s.stateDir, n)
		if err := os.Remove(m); err != nil {
			s.logf("removing the unfinished save %s: %v", m, err)
		} else {
			s.logf("removed %s, a save or receive an earlier daemon did not finish", m)
		}
	}
}

// received is a saved guest received whole, in its temporary file.
type received struct {
	tmp   string
	saved *SavedState
}

// cmdReceive puts a received guest in place and starts the VM from it.
func (v *vm) cmdReceive(ctx context.Context, c command) error {
	if v.m.State() != statemachine.Stopped || v.desired == statemachine.Running || v.cfg == nil {
		return v.notAllowed(c)
	}
	if err := os.Rename(c.received.tmp, v.sup.savePath(v.name)); err != nil {
		return fmt.Errorf("receive %s: %w", v.name, err)
	}
	v.setSaved(c.received.saved)
	v.desired = statemachine.Suspended
	if err := v.fire(ctx, statemachine.Saved, "saved guest received"); err != nil {
		return err
	}
	return v.cmdStart(ctx, command{op: statemachine.Start, reason: "restoring the received guest"})
}
