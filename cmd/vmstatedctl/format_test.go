package main

import (
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/statemachine"
)

func TestStateCell(t *testing.T) {
	cases := []struct {
		state, desired statemachine.State
		want           string
	}{
		{statemachine.Stopped, statemachine.Running, "stopped->running"},
		{statemachine.Running, statemachine.Running, "running"},
		{statemachine.Stopping, statemachine.Stopped, "stopping"},
		// A failed start leaves desired stopped; failed goes nowhere
		// until failreset, so no arrow.
		{statemachine.Failed, statemachine.Stopped, "failed"},
		{statemachine.Failed, statemachine.Running, "failed"},
	}
	for _, tc := range cases {
		if got := stateCell(api.Status{State: tc.state, Desired: tc.desired}); got != tc.want {
			t.Errorf("state %s desired %s: %q, want %q", tc.state, tc.desired, got, tc.want)
		}
	}
}

func TestRestartsWording(t *testing.T) {
	cases := []struct {
		restarts, max int
		detail, cell  string
	}{
		{0, 3, "0 of 3", "0/3"},
		{3, 3, "3 of 3", "3/3"},
		// The 4th restart found the budget spent and was not done.
		{4, 3, "3 of 3; restart 4 was refused, the budget is spent (failreset clears it)", "3/3"},
	}
	for _, tc := range cases {
		st := api.Status{Name: "web", State: statemachine.Failed, Restarts: tc.restarts, MaxRestart: tc.max}
		if got := restartsDetail(st); got != tc.detail {
			t.Errorf("%d of %d: detail %q, want %q", tc.restarts, tc.max, got, tc.detail)
		}
		var b strings.Builder
		printTable(&b, []api.Status{st}, st.Since)
		row := strings.Fields(strings.Split(b.String(), "\n")[1])
		if row[7] != tc.cell {
			t.Errorf("%d of %d: table cell %q, want %q", tc.restarts, tc.max, row[7], tc.cell)
		}
	}
}
