package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	StopDeadline time.Time        `json:"stop_deadline,omitempty"`
	LastExit     *hypervisor.Exit `json:"last_exit,omitempty"`
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
		LastExit:     v.lastExit,
	}
	if v.inst != nil {
		h := v.inst.Handle()
		r.Handle = &h
	}
	return r
}

// persist writes the actor's record. A failure to write is logged, never
// fatal: the VM goes on, and the next write may succeed.
//
// Every record is renamed into place atomically, so a crash of the daemon
// at any instant leaves the old record or the new one. Records of steady
// states (stopped, running, paused, failed) are also flushed to disk,
// file and directory, so they survive a crash of the host. Transient
// states (the start and stop steps, restarting) are not: they matter only
// while the VM's process lives, and a host crash ends that process too; a
// record torn by one is recognised after the reboot and taken for stopped
// (see Load). That keeps fsync off the path of every step of every start,
// stop and crash restart.
func (v *vm) persist() {
	if v.sup.stateDir == "" {
		return
	}
	if err := writeRecord(v.sup.stateDir, v.record(), v.m.State().Steady()); err != nil {
		v.log.Printf("saving state: %v", err)
		v.sup.logf("%s: saving state: %v", v.name, err)
	}
}

// writeRecord stores r atomically: a temp file renamed over the old record;
// with durable, the file is flushed before the rename and the directory
// after it, so the record survives a host crash too.
func writeRecord(dir string, r Record, durable bool) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := filepath.Join(dir, r.Name+".json")
	tmp, err := os.CreateTemp(dir, "."+r.Name+".json.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readRecord loads one record.
func readRecord(path string) (Record, error) {
	var r Record
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
