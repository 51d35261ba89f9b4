package supervisor

import (
	"slices"
	"testing"

	"github.com/vmstated/vmstated/hypervisor"
)

func TestGuestAddresses(t *testing.T) {
	ifs := []hypervisor.GuestInterface{
		{Name: "lo", Addresses: []string{"127.0.0.1/8", "::1/128"}},
		{Name: "eth0", Addresses: []string{"192.0.2.10/24", "fe80::5054:ff:fe12:3456/64", "2001:db8::10/64"}},
		{Name: "odd", Addresses: []string{"not an address", "0.0.0.0/0"}},
	}
	want := []string{"192.0.2.10", "2001:db8::10"}
	if got := guestAddresses(ifs); !slices.Equal(got, want) {
		t.Errorf("guestAddresses = %v, want %v", got, want)
	}
}
