package supervisor

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// How often a VM's guest agent is asked for the guest's addresses: often
// until it first answers (the guest is booting), then seldom, as addresses
// rarely change and each ask wakes the guest.
const (
	agentPollFirst = 2 * time.Second
	agentPoll      = 15 * time.Second
	// agentAsk bounds one ask; an absent agent never answers.
	agentAsk = 5 * time.Second
)

// vmAgent follows a VM's guest agent while its hypervisor runs.
type vmAgent struct {
	mu     sync.Mutex
	inst   hypervisor.Instance // the instance polled, nil when none
	cancel context.CancelFunc
	addrs  []string // the guest's addresses, as last reported
	// answered is set once the agent of inst has answered.
	answered bool
}

// syncAgent polls the guest agent of the instance s shows, if it has one,
// and stops polling once the instance is gone or replaced. It runs in the
// VM's actor and never blocks.
func (v *vm) syncAgent(s *Status) {
	x := &v.access.agent
	x.mu.Lock()
	defer x.mu.Unlock()
	if s.instance == x.inst {
		return
	}
	if x.cancel != nil {
		x.cancel()
	}
	x.inst, x.cancel, x.addrs, x.answered = nil, nil, nil, false
	ga, ok := s.instance.(hypervisor.GuestAgent)
	if !ok || !ga.HasGuestAgent() {
		return
	}
	ctx, cancel := context.WithCancel(v.sup.ctx)
	x.inst, x.cancel = s.instance, cancel
	v.sup.wg.Add(1)
	go func() {
		defer v.sup.wg.Done()
		v.pollAgent(ctx, s.instance, ga)
	}()
}

// pollAgent asks for the guest's addresses while the VM runs, until ctx
// ends or the instance exits.
func (v *vm) pollAgent(ctx context.Context, inst hypervisor.Instance, ga hypervisor.GuestAgent) {
	x := &v.access.agent
	wait := time.Duration(0)
	answered := false
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-inst.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = agentPollFirst
		if answered {
			wait = agentPoll
		}
		// A paused guest cannot answer; nothing is asked of it.
		if v.status.Load().State != statemachine.Running {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, agentAsk)
		ifs, err := ga.GuestInterfaces(actx)
		cancel()
		if err != nil {
			continue
		}
		if !answered {
			v.log.Printf("guest agent answers")
		}
		answered = true
		addrs := guestAddresses(ifs)
		x.mu.Lock()
		if x.inst == inst {
			x.addrs, x.answered = addrs, true
		}
		x.mu.Unlock()
		wait = agentPoll
	}
}

// guestAddresses lists the addresses others can reach a guest at: none
// of loopback, none link-local (those say nothing a user can dial).
func guestAddresses(ifs []hypervisor.GuestInterface) []string {
	var out []string
	for _, f := range ifs {
		for _, a := range f.Addresses {
			ip, _, err := net.ParseCIDR(a)
			if err != nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			out = append(out, ip.String())
		}
	}
	return out
}

// agentAnswered reports whether the agent of inst has answered yet.
func (v *vm) agentAnswered(inst hypervisor.Instance) bool {
	x := &v.access.agent
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.inst == inst && x.answered
}

// guestAddrs returns the guest's addresses as its agent last reported
// them.
func (v *vm) guestAddrs() []string {
	x := &v.access.agent
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.addrs...)
}
