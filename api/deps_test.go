package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The client side carries no daemon machinery: the api package (what a
// client imports) pulls in neither the state machine nor the config
// loader and its watcher, and vmstatedctl no state machine, whose names
// it takes from api.
func TestClientDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/vmstated/vmstated/api", []string{
			"github.com/looplab/fsm", "github.com/vmstated/vmstated/statemachine", "github.com/vmstated/vmstated/supervisor",
			"github.com/vmstated/vmstated/config", "github.com/vmstated/vmstated/ucl", "github.com/fsnotify/fsnotify",
		}},
		{"github.com/vmstated/vmstated/cmd/vmstatedctl", []string{
			"github.com/looplab/fsm", "github.com/vmstated/vmstated/statemachine", "github.com/vmstated/vmstated/supervisor",
		}},
	} {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tc.pkg, err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, f := range tc.forbidden {
			if deps[f] {
				t.Errorf("%s depends on %s", tc.pkg, f)
			}
		}
	}
}
