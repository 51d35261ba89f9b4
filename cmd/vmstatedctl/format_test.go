package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
)

func TestStateCell(t *testing.T) {
	cases := []struct {
		state, desired api.State
		want           string
	}{
		{api.StateStopped, api.StateRunning, "stopped->running"},
		{api.StateRunning, api.StateRunning, "running"},
		{api.StateStopping, api.StateStopped, "stopping"},
		// A failed start leaves desired stopped; failed goes nowhere
		// until failreset, so no arrow.
		{api.StateFailed, api.StateStopped, "failed"},
		{api.StateFailed, api.StateRunning, "failed"},
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
		st := api.Status{Name: "web", State: api.StateFailed, Restarts: tc.restarts, MaxRestart: tc.max}
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

// The detail view has a line per network the daemon set up.
func TestNetworkDetail(t *testing.T) {
	var b strings.Builder
	printDetail(&b, api.Status{Name: "web", State: api.StateRunning, Networks: []api.Network{
		{Type: "bridge", Tap: "vm1n0", Bridge: "br0"},
		{Type: "local", Tap: "vm1n1", Address: "100.64.0.3", Gateway: "100.64.0.2", NAT: true},
	}}, time.Now())
	for _, want := range []string{
		"nic 0:", "bridge, tap vm1n0 on bridge br0\n",
		"nic 1:", "local, tap vm1n1, address 100.64.0.3, gateway 100.64.0.2, nat\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("detail lacks %q:\n%s", want, b.String())
		}
	}
}

// The ADDRESS column goes by the guest agent's word, and without it by
// the addresses the daemon's local networks gave the guest.
func TestAddressCell(t *testing.T) {
	local := []api.Network{{Type: "bridge", Tap: "t0"}, {Type: "local", Tap: "t1", Address: "100.64.0.3"}, {Type: "local", Tap: "t2", Address: "100.64.0.5"}}
	for _, c := range []struct {
		st   api.Status
		want string
	}{
		{api.Status{}, "-"},
		{api.Status{Networks: local[:1]}, "-"},
		{api.Status{Networks: local[:2]}, "100.64.0.3"},
		{api.Status{Networks: local}, "100.64.0.3(+1)"},
		{api.Status{IPAddresses: []string{"192.0.2.10"}, Networks: local}, "192.0.2.10"},
		{api.Status{IPAddresses: []string{"192.0.2.10", "2001:db8::1"}}, "192.0.2.10(+1)"},
	} {
		if got := addressCell(c.st); got != c.want {
			t.Errorf("addressCell(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}
