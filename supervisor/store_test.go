package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// A record is encoded once, without its version number, which is added
// to the encoding: the result reads back as the record with that version.
func TestWithSeq(t *testing.T) {
	r := Record{Version: recordVersion, Name: "vm0", State: statemachine.Running, Desired: statemachine.Running,
		Since: time.Unix(1700000000, 5).UTC(), Handle: &hypervisor.Handle{Driver: "exec", PID: 42, StartTime: 7},
		Restarts: []time.Time{time.Unix(1700000001, 0).UTC()}, Reason: "exec started, pid 42"}
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	data := withSeq(body, 12)
	if data[len(data)-1] != '\n' {
		t.Errorf("record %q does not end in a newline", data)
	}
	var got Record
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	r.Seq = 12
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(r)
	if string(a) != string(b) {
		t.Errorf("read back %s, want %s", a, b)
	}
}

// Retries of a write that fails the same way are one failure, whatever
// temporary file each try named.
func TestSameFailure(t *testing.T) {
	ro := func(name string) error {
		return fmt.Errorf("write: %w", &fs.PathError{Op: "open", Path: name, Err: syscall.EROFS})
	}
	if !sameFailure(ro("/s/.a.json.tmp1"), ro("/s/.a.json.tmp2")) {
		t.Error("two read-only failures taken for different ones")
	}
	full := fmt.Errorf("write: %w", &fs.PathError{Op: "write", Path: "/s/a.json", Err: syscall.ENOSPC})
	if sameFailure(ro("/s/a.json"), full) {
		t.Error("a read-only and a full directory taken for one failure")
	}
}

// Of a record and the copy kept while the state directory took none, the
// newer goes; a copy older than the record (left by a daemon that died
// right after the record was saved) does not.
func TestReadKeptGoesByTheNewer(t *testing.T) {
	dir := t.TempDir()
	s := &Supervisor{stateDir: filepath.Join(dir, "state"), logf: t.Logf}
	s.store = newStore(s.stateDir, filepath.Join(dir, "run", keptDirName), t.Logf)
	write := func(path string, r Record) {
		t.Helper()
		r.Version = recordVersion
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	running := func(name string, seq uint64) Record {
		return Record{Name: name, State: statemachine.Running, Desired: statemachine.Running, Seq: seq}
	}
	stopped := func(name string, seq uint64) Record {
		return Record{Name: name, State: statemachine.Stopped, Desired: statemachine.Stopped, Seq: seq}
	}
	write(s.store.path("newer"), running("newer", 3))
	write(s.store.keptPath("newer"), stopped("newer", 5))
	write(s.store.path("older"), stopped("older", 7))
	write(s.store.keptPath("older"), running("older", 6))
	write(s.store.keptPath("only"), stopped("only", 1))
	write(s.store.path("none"), running("none", 2))

	got := s.readRecords()
	for name, want := range map[string]struct {
		state statemachine.State
		kept  bool
	}{
		"newer": {statemachine.Stopped, true},
		"older": {statemachine.Stopped, true},
		"only":  {statemachine.Stopped, true},
		"none":  {statemachine.Running, false},
	} {
		l, ok := got[name]
		if !ok || l.err != nil {
			t.Errorf("%s: not read (%v)", name, l.err)
			continue
		}
		if l.rec.State != want.state || l.kept != want.kept {
			t.Errorf("%s: state %s kept %v, want %s kept %v", name, l.rec.State, l.kept, want.state, want.kept)
		}
	}
}

// Records of resting states written in a burst are flushed once the
// burst pauses, every one of them.
func TestFlusherFlushesABurst(t *testing.T) {
	dir := t.TempDir()
	st := newStore(dir, "", t.Logf)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 200 {
		if err := st.write(fmt.Sprintf("vm%d", i%50), []byte(`{"version":1}`+"\n"), true); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.pending)
	}
	for deadline := time.Now().Add(time.Minute); pending() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still wait for their flush a minute after the burst", pending())
		}
	}
}
