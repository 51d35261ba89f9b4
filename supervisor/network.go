package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/vmnet"
)

// The daemon's own network work (package vmnet) sits around two hooks:
// start_network's hook runs after the taps, addresses, DHCP and NAT are in
// place, so it can add to them (firewall rules); stop_network's runs
// before they go. A start that fails after the set-up, and a teardown that
// a daemon crash cut short, are cleaned up on the way into stopped or
// failed, so nothing stays behind whichever way a VM comes to rest.

// netBefore does the network work that precedes st's hook; failed is true
// when the step has failed and its hook must not run.
func (v *vm) netBefore(ctx context.Context, st statemachine.State, spec vmnet.Spec, call *hookCall) (r workResult, failed bool) {
	n := v.sup.net
	switch st {
	case statemachine.StartNetwork:
		if len(spec.NICs) == 0 {
			return r, false
		}
		if n == nil {
			return workResult{hook: st, reason: "nic types bridge and local need the daemon's state directory, where the set-up is recorded; run the daemon with -S"}, true
		}
		s, err := n.Setup(ctx, spec)
		if err != nil {
			return workResult{hook: st, reason: "network set-up failed: " + err.Error()}, true
		}
		v.log.Printf("network set up: %s", describeNet(s))
		call.network = netEnv(s)
	case statemachine.StopNetwork:
		if n != nil {
			s, _ := n.Load(v.name)
			call.network = netEnv(s)
		}
	case statemachine.Stopped, statemachine.Failed:
		_ = v.netTeardown(ctx)
	}
	return r, false
}

// netAfter does the network work that follows st's hook: stop_network
// removes what start_network set up, whatever the hook's outcome.
func (v *vm) netAfter(ctx context.Context, st statemachine.State, r workResult) workResult {
	if st != statemachine.StopNetwork {
		return r
	}
	if err := v.netTeardown(ctx); err != nil && r.ok {
		r.ok, r.reason = false, "network teardown failed: "+err.Error()
	}
	return r
}

// netTeardown removes the VM's network, when one is set up.
func (v *vm) netTeardown(ctx context.Context) error {
	n := v.sup.net
	if n == nil {
		return nil
	}
	s, err := n.Load(v.name)
	if err == nil && s == nil {
		return nil
	}
	if err == nil {
		err = n.Teardown(ctx, v.name)
	}
	if err != nil {
		v.log.Printf("network not removed: %v; it is tried again when the VM next comes to rest", err)
		return err
	}
	v.log.Printf("network removed: %s", strings.Join(s.Taps(), ", "))
	return nil
}

// recoverNetwork takes over what the previous daemon set up: a VM whose
// network is (or may be) up gets it found again, DHCP served again; one
// at rest has leftovers removed.
func (v *vm) recoverNetwork(ctx context.Context, st statemachine.State) {
	n := v.sup.net
	if n == nil {
		return
	}
	switch st {
	case statemachine.Stopped, statemachine.Failed:
		_ = v.netTeardown(ctx)
		return
	case statemachine.StopNetwork:
		// Its step ends with the teardown, whatever the journal says of
		// its hook: nothing to serve until then.
		return
	}
	s, err := n.Resume(v.name)
	switch {
	case err != nil:
		v.log.Printf("network not fully found again: %v", err)
	case s != nil:
		v.log.Printf("network found again: %s", describeNet(s))
	}
}

// describeNet is one line about what is set up, for the VM's log.
func describeNet(s *vmnet.State) string {
	var parts []string
	for _, l := range s.Links {
		switch l.Type {
		case vmnet.TypeBridge:
			parts = append(parts, fmt.Sprintf("tap %s on bridge %s", l.Tap, l.Bridge))
		case vmnet.TypeLocal:
			p := fmt.Sprintf("tap %s, gateway %s, guest %s/31, DHCP", l.Tap, l.Gateway, l.Address)
			if l.Table != "" {
				p += ", NAT"
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "; ")
}

// netEnv are the hook variables about what is set up: VMSTATED_TAPS
// lists the taps, and VMSTATED_NIC<n>_TAP (and for local NICs _ADDRESS and
// _GATEWAY) describe NIC n of those the daemon set up, counted from 0.
func netEnv(s *vmnet.State) map[string]string {
	if s == nil || len(s.Links) == 0 {
		return nil
	}
	env := map[string]string{"VMSTATED_TAPS": strings.Join(s.Taps(), " ")}
	for i, l := range s.Links {
		p := "VMSTATED_NIC" + strconv.Itoa(i) + "_"
		env[p+"TAP"] = l.Tap
		if l.Bridge != "" {
			env[p+"BRIDGE"] = l.Bridge
		}
		if l.Address.IsValid() {
			env[p+"ADDRESS"] = l.Address.String()
			env[p+"GATEWAY"] = l.Gateway.String()
		}
	}
	return env
}

// sweepNetworks removes what is set up for VMs that no record claims
// (a daemon that died between the set-up and the first record).
func (s *Supervisor) sweepNetworks(claimed func(string) bool) {
	if s.net == nil {
		return
	}
	for _, name := range s.net.Known() {
		if claimed(name) {
			continue
		}
		if err := s.net.Teardown(s.ctx, name); err != nil {
			s.logf("%s: removing a network no record claims: %v", name, err)
		} else {
			s.logf("%s: removed a network no record claims", name)
		}
	}
}

// releaseLeases frees the /31s of VMs whose config directory is gone and
// which are at rest, so that deleted VMs do not fill the pools. A VM with
// a saved guest state keeps its lease: the restored guest still uses the
// address.
func (s *Supervisor) releaseLeases(gone func(string) bool) {
	if s.net == nil {
		return
	}
	freed, err := s.net.Release(func(name string) bool {
		if !gone(name) {
			return false
		}
		_, err := os.Stat(s.savePath(name))
		return errors.Is(err, os.ErrNotExist)
	})
	if err != nil {
		s.logf("%v", err)
	}
	for _, name := range freed {
		s.logf("%s: its config directory is gone: its address lease is free again", name)
	}
}
