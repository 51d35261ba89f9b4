package supervisor

import (
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
