package main

import (
	"testing"

	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

func TestExitMessage(t *testing.T) {
	cases := []struct {
		list []supervisor.Status
		want string
	}{
		{nil, "exiting; no VM is running"},
		{[]supervisor.Status{{Name: "a", State: statemachine.Stopped}, {Name: "b", State: statemachine.Failed}},
			"exiting; no VM is running"},
		{[]supervisor.Status{{Name: "web", State: statemachine.Running, PID: 42}, {Name: "db", State: statemachine.Stopped}},
			"exiting; 1 VM keeps running (web): the next vmstated takes over"},
		{[]supervisor.Status{{Name: "a", State: statemachine.Running, PID: 1}, {Name: "b", State: statemachine.Paused, PID: 2},
			{Name: "c", State: statemachine.StartNetwork}},
			"exiting; 2 VMs keep running (a, b), 1 VM between states (c): the next vmstated takes over"},
	}
	for _, tc := range cases {
		if got := exitMessage(tc.list); got != tc.want {
			t.Errorf("%+v:\n got %q\nwant %q", tc.list, got, tc.want)
		}
	}
}
