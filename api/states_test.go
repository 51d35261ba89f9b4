package api_test

import (
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/statemachine"
)

// The client's copy of the state names must be the daemon's, in the same
// order and with the same properties.
func TestStatesMatchStateMachine(t *testing.T) {
	if len(api.States) != len(statemachine.States) {
		t.Fatalf("api has %d states, statemachine %d: %v vs %v", len(api.States), len(statemachine.States), api.States, statemachine.States)
	}
	for i, s := range statemachine.States {
		a := api.States[i]
		if string(a) != string(s) {
			t.Errorf("state %d: api %q, statemachine %q", i, a, s)
		}
		if a.Steady() != s.Steady() || a.HypervisorUp() != s.HypervisorUp() || !a.Valid() {
			t.Errorf("%s: api steady=%v up=%v, statemachine steady=%v up=%v", s, a.Steady(), a.HypervisorUp(), s.Steady(), s.HypervisorUp())
		}
	}
	if api.State("bogus").Valid() {
		t.Error("an unknown state is valid")
	}
}
