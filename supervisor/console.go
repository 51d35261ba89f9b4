package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmstated/vmstated/console"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
)

// sourceConsole tags the lines a guest wrote to its serial console.
const sourceConsole = "console"

// consoleOutput is where a VM's driver copies the guest's serial console:
// the VM log, one line per guest line.
func (v *vm) consoleOutput() io.Writer {
	return crlfWriter{v.log.Writer(sourceConsole)}
}

// crlfWriter drops the carriage return a terminal line ends with, which
// would otherwise end up in the log file.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	line := p
	if n := len(line); n >= 2 && line[n-1] == '\n' {
		line = bytes.TrimRight(line[:n-1], "\r")
		line = append(line[:len(line):len(line)], '\n')
	}
	if _, err := c.w.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}

// guestAccess is how operators reach a VM's guest: its console relay
// (and the instance it is connected to), its VNC relay and its guest
// agent.
type guestAccess struct {
	once  sync.Once
	relay *console.Relay
	inst  hypervisor.Instance // owned by the VM's actor
	vnc   vmVNC
	agent vmAgent
}

func (v *vm) consoleRelay() *console.Relay {
	v.access.once.Do(func() { v.access.relay = console.New() })
	return v.access.relay
}

// syncAccess follows the instance s shows with the console and VNC
// relays. It runs in the VM's actor with every published status, and
// never blocks.
func (v *vm) syncAccess(s *Status) {
	v.syncConsole(s)
	v.syncVNC(s)
	v.syncAgent(s)
}

// syncConsole points the relay at the instance s shows, and ends the
// sessions once the VM is at rest.
func (v *vm) syncConsole(s *Status) {
	c := &v.access
	switch {
	case s.instance != nil && s.instance != c.inst:
		c.inst = s.instance
		if cons, ok := s.instance.(hypervisor.Consoler); ok {
			v.consoleRelay().Connect(cons.Console)
		}
	case s.instance == nil && c.inst != nil && atRest(s.State):
		// Between a reboot's exit and the relaunch, sessions wait.
		c.inst = nil
		v.consoleRelay().End(console.End{Code: console.EndStopped, Message: fmt.Sprintf("vm %s has stopped", v.name)})
	}
}

// waitComingUp waits while v's hypervisor is coming up (see comingUp)
// and not there yet, or there but not yet ready by ready, for at most
// consoleWait. It returns the last status seen.
func (v *vm) waitComingUp(ctx context.Context, ready func(*Status) bool) *Status {
	st := v.status.Load()
	waiting := func() bool { return comingUp(st.State) && (st.instance == nil || !ready(st)) }
	if !waiting() {
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, consoleWait)
	defer cancel()
	// The actor has no change notice to offer; a hypervisor comes up
	// within moments, so a short poll costs nothing.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for waiting() && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		st = v.status.Load()
	}
	return st
}

// consoleWait bounds waiting for a hypervisor that is coming up.
const consoleWait = 10 * time.Second

// comingUp reports whether a hypervisor is expected in state st soon
// (the state says it runs, the daemon is still finding it, or it is
// being relaunched).
func comingUp(st statemachine.State) bool {
	switch st {
	case statemachine.Running, statemachine.Paused, statemachine.Restarting, statemachine.Restarted:
		return true
	}
	return false
}

// atRest reports whether no hypervisor will run in state st without a
// new start.
func atRest(st statemachine.State) bool {
	switch st {
	case statemachine.Stopped, statemachine.Failed, statemachine.StopStorage, statemachine.StopNetwork, statemachine.Suspended:
		return true
	}
	return false
}

// AttachConsole attaches to the serial console of a running VM, replaying
// the last lines of its output (all that is kept for lines < 0).
// A hypervisor about to be there (relaunched after a reboot, re-adopted
// after a daemon restart) is waited for until ctx ends or consoleWait
// passes.
func (s *Supervisor) AttachConsole(ctx context.Context, name string, mode console.Mode, lines int) (*console.Session, error) {
	v, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	// The console needs the instance only: it is ready once there.
	st := v.waitComingUp(ctx, func(*Status) bool { return true })
	if st.instance == nil {
		return nil, fmt.Errorf("%w: vm %s is %s, no console to attach to: start it first ('vmstatedctl start -c %s' starts and attaches)",
			statemachine.ErrNotAllowed, name, st.State, name)
	}
	cons, ok := st.instance.(hypervisor.Consoler)
	if !ok {
		return nil, fmt.Errorf("%w: vm %s (%s) has no console", hypervisor.ErrNotSupported, name, st.Hypervisor)
	}
	r := v.consoleRelay()
	if !r.Connected() {
		// An instance without a console (serial = false) says so at
		// once, even with a cancelled context; one that has a console
		// fails the dial without trying.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if c, err := cons.Console(ctx); errors.Is(err, hypervisor.ErrNotSupported) {
			return nil, err
		} else if c != nil {
			c.Close()
		}
	}
	return r.Attach(mode, lines)
}
