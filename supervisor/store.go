package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// recordVersion is the layout version of state records.
const recordVersion = 1

// Record is what the daemon keeps about a VM across its own restarts, in
// <statedir>/<name>.json.
type Record struct {
	Version int                `json:"version"`
	Name    string             `json:"name"`
	State   statemachine.State `json:"state"`
	Desired statemachine.State `json:"desired"`
	Since   time.Time          `json:"since"`
	// Handle finds the hypervisor process again; nil when none runs.
	Handle *hypervisor.Handle `json:"handle,omitempty"`
	// Restarts are the automatic restarts inside the budget window.
	Restarts []time.Time `json:"restarts,omitempty"`
	// Failure is the recorded failure reason, during a failure's teardown
	// and in failed.
	Failure string `json:"failure,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// StopDeadline is when a graceful stop in progress turns forced.
	StopDeadline time.Time `json:"stop_deadline,omitempty"`
	// StopForce marks a stop in progress as forced: the next daemon
	// goes on killing, never asks the guest again.
	StopForce bool             `json:"stop_force,omitempty"`
	LastExit  *hypervisor.Exit `json:"last_exit,omitempty"`
	// VNCPassword is the VM's random VNC password (vnc_password = auto),
	// made up once and kept, so that it stays across restarts.
	VNCPassword string `json:"vnc_password,omitempty"`
	// Saved describes the guest state a suspend saved, until a restore
	// used it or it was discarded.
	Saved *SavedState `json:"saved,omitempty"`
	// Seq numbers the versions of the record, upwards: of the record in
	// the state directory and the copy kept in the run directory while
	// the state directory would not take it (see store.keep), the one
	// with the higher number is the newer.
	Seq uint64 `json:"seq,omitempty"`
}

// record captures the actor's current state.
func (v *vm) record() Record {
	r := Record{
		Version:      recordVersion,
		Name:         v.name,
		State:        v.m.State(),
		Desired:      v.desired,
		Since:        v.m.Since(),
		Restarts:     v.m.Budget().Times(),
		Failure:      v.m.Failure(),
		Reason:       v.lastReason,
		StopDeadline: v.deadline,
		StopForce:    v.stopForce,
		LastExit:     v.lastExit,
		VNCPassword:  v.vncAuto,
		Saved:        v.guestSave,
	}
	if v.inst != nil {
		h := v.inst.Handle()
		r.Handle = &h
	}
	return r
}

// Retry delays for a record that could not be written: the first retry
// comes soon (a full disk is often freed quickly), later ones back off.
const (
	saveRetryFirst = 500 * time.Millisecond
	saveRetryMax   = 5 * time.Second
)

// save writes the actor's record when it differs from the one last
// written. The actor calls it after every message it handles and before it
// starts any work, so the record on disk is never behind what the VM does.
// A record that cannot be written stays dirty: the error shows in the
// status, and the actor retries (see retryC) until it is written.
func (v *vm) save() error {
	if v.sup.store == nil {
		return nil
	}
	body, err := json.Marshal(v.record())
	if err != nil {
		return err
	}
	if v.saveErr == nil && bytes.Equal(body, v.saved) {
		return nil
	}
	// A new version of the record.
	v.recSeq++
	data := withSeq(body, v.recSeq)
	err = v.sup.store.write(v.name, data, v.m.State().Steady())
	if err != nil {
		// What the state directory would not take is kept in the run
		// directory, where the next daemon of this boot finds it: a
		// stop or a failreset done meanwhile is not undone by a crash
		// of the daemon before the record could be written.
		kept, keepErr := v.sup.store.keep(v.name, data)
		v.kept = v.kept || kept != ""
		first := v.saveErr == nil
		if first || !sameFailure(v.saveErr, err) {
			switch {
			case kept != "":
				v.log.Printf("state not saved: %v; retrying until it is, meanwhile kept in %s", err, kept)
			case keepErr != nil:
				v.log.Printf("state not saved: %v; retrying until it is (no copy kept either: %v)", err, keepErr)
			default:
				v.log.Printf("state not saved: %v; retrying until it is", err)
			}
			v.sup.logf("%s: state not saved: %v", v.name, err)
			v.saveErr = err
			v.publishStatus() // before the event: whoever reacts finds it
			v.sup.bus.Publish(Event{Kind: KindRecord, VM: v.name, Reason: "not saved: " + err.Error()})
		}
		if first {
			v.retryDelay = saveRetryFirst
		} else {
			v.retryDelay = min(2*v.retryDelay, saveRetryMax)
		}
		v.saveErr = err
		v.retryAt = v.sup.now().Add(v.retryDelay)
		return err
	}
	if v.kept {
		// The record is newer than the copy; the copy only confuses.
		v.sup.store.dropKept(v.name)
		v.kept = false
	}
	if v.saveErr != nil {
		v.log.Printf("state saved again")
		v.sup.logf("%s: state saved again", v.name)
		v.saveErr, v.saved = nil, body
		v.publishStatus() // before the event: whoever reacts finds it
		v.sup.bus.Publish(Event{Kind: KindRecord, VM: v.name, Reason: "saved"})
		return nil
	}
	v.saveErr, v.saved = nil, body
	return nil
}

// sameFailure reports whether two failed writes failed alike: by the same
// system error where there is one, as the names of temporary files in
// their messages differ from one try to the next.
func sameFailure(a, b error) bool {
	var ea, eb syscall.Errno
	if errors.As(a, &ea) && errors.As(b, &eb) {
		return ea == eb
	}
	return a.Error() == b.Error()
}

// retryC returns a channel that fires when a failed record write is due
// for another try; nil when the record is saved.
func (v *vm) retryC() (<-chan time.Time, func()) {
	if v.saveErr == nil {
		return nil, func() {}
	}
	t := time.NewTimer(max(time.Until(v.retryAt), 0))
	return t.C, func() { t.Stop() }
}

// withSeq is the record encoded as body (with Seq zero, so left out) with
// version seq added, and a newline. The actor compares bodies to tell
// whether a record changed, and so encodes each record once.
func withSeq(body []byte, seq uint64) []byte {
	data := make([]byte, 0, len(body)+24)
	data = append(data, body[:len(body)-1]...)
	data = append(data, `,"seq":`...)
	data = strconv.AppendUint(data, seq, 10)
	return append(data, "}\n"...)
}

// store writes state records. Every record is replaced atomically
// (atomicfile.Overwrite: in place, as only the daemon reads its records
// while it runs), so a crash of the daemon at any instant leaves the old
// record or the new one. Records of resting states (stopped, running, paused,
// failed) are also flushed to disk so that they survive a crash of the
// host; the flush is not on the VM's path: a flusher flushes every record
// written since its last round together, once they pause (flushQuiet),
// with one flush of the directory for all of them, so that a thousand VMs
// settling at once (a host shutdown) wait on no disk. A record torn by a
// host crash before its flush is recognised after the reboot and taken for
// stopped (see Load), which is what it is then. Records of transient states (the start and
// stop steps, restarting) are never flushed: they matter only while the
// VM's process lives, and a host crash ends that process too.
type store struct {
	dir string
	// keepDir holds copies of records the state directory would not take
	// (read-only, full), in the run directory; "" keeps none.
	keepDir string
	logf    func(string, ...any)

	mu      sync.Mutex
	pending map[string]struct{} // paths to flush
	kick    chan struct{}
}

func newStore(dir, keepDir string, logf func(string, ...any)) *store {
	return &store{dir: dir, keepDir: keepDir, logf: logf, pending: make(map[string]struct{}), kick: make(chan struct{}, 1)}
}

func (st *store) path(name string) string { return filepath.Join(st.dir, name+".json") }

// keptDirName is the directory of the run directory that holds the copies
// of unsaved records; VM names start with a letter, so no VM's run
// directory has its name.
const keptDirName = ".unsaved-records"

// keptPath is where the copy of a VM's unsaved record is kept.
func (st *store) keptPath(name string) string { return filepath.Join(st.keepDir, name+".json") }

// keep writes a copy of a record the state directory would not take and
// returns its path. The run directory lives as long as the boot (it is on
// /run), as long as a VM process the record speaks of can live.
func (st *store) keep(name string, data []byte) (string, error) {
	if st.keepDir == "" {
		return "", nil
	}
	if err := os.MkdirAll(st.keepDir, 0o700); err != nil {
		return "", err
	}
	path := st.keptPath(name)
	if err := atomicfile.Overwrite(path, data, atomicfile.Options{}); err != nil {
		return "", err
	}
	return path, nil
}

// dropKept removes the copy of a record once the record itself is saved.
func (st *store) dropKept(name string) {
	if st.keepDir == "" {
		return
	}
	if err := os.Remove(st.keptPath(name)); err != nil && !os.IsNotExist(err) {
		st.logf("removing the kept copy of the state record of %s: %v", name, err)
	}
}

// write replaces a VM's record; durable records are queued for the next
// flush.
func (st *store) write(name string, data []byte, durable bool) error {
	path := st.path(name)
	if err := atomicfile.Overwrite(path, data, atomicfile.Options{}); err != nil {
		return err
	}
	if durable {
		st.mu.Lock()
		st.pending[path] = struct{}{}
		st.mu.Unlock()
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// A flush round waits until records have stopped coming for flushQuiet,
// or flushMaxDelay after the first: each record costs a flush of the disk
// (on ext4 without a journal, of the device), and a thousand of them in
// the middle of a start of all VMs kept the disk and the runtime busy
// while the VMs were launched. A record written is on its way to disk at
// once either way; what waits is only its surviving a crash of the host.
const (
	flushQuiet    = 100 * time.Millisecond
	flushMaxDelay = time.Second
)

// run flushes queued records until ctx ends, then once more.
func (st *store) run(ctx context.Context) {
	for {
		select {
		case <-st.kick:
			if !st.settle(ctx) {
				st.flush()
				return
			}
			st.flush()
		case <-ctx.Done():
			st.flush()
			return
		}
	}
}

// settle waits for a pause in the records to flush (see flushQuiet); false
// means ctx ended meanwhile.
func (st *store) settle(ctx context.Context) bool {
	deadline := time.Now().Add(flushMaxDelay)
	t := time.NewTimer(flushQuiet)
	defer t.Stop()
	for {
		select {
		case <-st.kick:
			left := time.Until(deadline)
			if left <= 0 {
				return true
			}
			t.Reset(min(flushQuiet, left))
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// flush flushes every queued record, then the directory once.
func (st *store) flush() {
	st.mu.Lock()
	batch := st.pending
	st.pending = make(map[string]struct{})
	st.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	for path := range batch {
		if err := atomicfile.Sync(path); err != nil && !os.IsNotExist(err) {
			st.logf("flushing state record %s: %v", path, err)
		}
	}
	if err := atomicfile.SyncDir(st.dir); err != nil {
		st.logf("flushing state directory %s: %v", st.dir, err)
	}
}

// readRecord loads one record.
func readRecord(path string) (Record, error) {
	var r Record
	fi, err := os.Lstat(path)
	if err != nil {
		return r, err
	}
	if !fi.Mode().IsRegular() {
		return r, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != recordVersion {
		return r, fmt.Errorf("%s: record version %d, this daemon reads %d", path, r.Version, recordVersion)
	}
	if !r.State.Valid() {
		return r, fmt.Errorf("%s: unknown state %q", path, r.State)
	}
	return r, nil
}
