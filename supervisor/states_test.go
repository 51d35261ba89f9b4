package supervisor

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/statemachine"
)

// Every state has its behaviour: what to do on entering it, on a result
// and after a daemon restart; every state whose recovery reads a hook
// journal says how to go on from it.
func TestEveryStateHasItsBehaviour(t *testing.T) {
	journals := map[statemachine.State]bool{}
	for _, st := range statemachine.States {
		b, ok := behaviours[st]
		if !ok {
			t.Errorf("state %s has no behaviour", st)
			continue
		}
		if b.enter == nil || b.result == nil || b.recover == nil {
			t.Errorf("state %s lacks enter, result or recover", st)
		}
		switch st {
		case statemachine.Stopped, statemachine.Failed, statemachine.Suspended:
			// Resting: an unfinished hook is run again by resumeNotice.
		case statemachine.Suspending:
			// Recovered from the hypervisor and the save file alone: a
			// guest still there runs on, whatever became of the hook.
		default:
			journals[st] = true
		}
	}
	for st := range journals {
		if behaviours[st].journaled == nil {
			t.Errorf("state %s recovers through its hook journal but has no journaled behaviour", st)
		}
	}
}

// An event the table refuses is not dropped in silence: fire returns the
// refusal, the VM's log says so (the daemon's too), and the VM stays
// where it was.
func TestRefusedEventIsLogged(t *testing.T) {
	f := newFixture(t)
	f.addVM("vm0", sleeper)
	f.sync()
	v, err := f.sup.lookup("vm0")
	if err != nil {
		t.Fatal(err)
	}
	var fired error
	done := make(chan struct{})
	// Inside the actor, which alone may move its machine.
	if err := v.send(ctx(t), inspect{fn: func() { fired = v.fire(ctx(t), statemachine.Done, "nothing ran") }, done: done}); err != nil {
		t.Fatal(err)
	}
	<-done
	if !errors.Is(fired, statemachine.ErrNotAllowed) {
		t.Errorf("fire of done in stopped: %v, want a refusal", fired)
	}
	if st, _ := f.sup.Get("vm0"); st.State != sStopped {
		t.Errorf("after a refused event the VM is %s, want stopped", st.State)
	}
	logPath, _ := f.sup.LogPath("vm0")
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "event done refused in state stopped") {
		t.Errorf("the VM's log does not tell of the refused event:\n%s", b)
	}
}
