// Package supervisor runs VMs: one actor per VM owns its state machine,
// runs its hooks, launches and stops its hypervisor through a driver,
// applies the exit policies and the restart budget, and keeps its log. A
// registry holds the actors, applies config changes, orders dependencies
// and publishes every transition as an event.
//
// No VM ever waits for another, nor for a status query: a slow hook blocks
// only the VM it belongs to, and status reads a snapshot each actor
// publishes after every step.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmstated/vmstated/hooks"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/vmnet"
)

// Sentinel errors.
var (
	// ErrUnknownVM: no VM of that name.
	ErrUnknownVM = errors.New("no such VM")
	// ErrInvalidConfig: the VM has no config that loaded.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrShuttingDown: the daemon is exiting.
	ErrShuttingDown = errors.New("the daemon is shutting down")
)

// StopOptions tune a stop.
type StopOptions struct {
	// Force kills the hypervisor without asking the guest first.
	Force bool `json:"force,omitempty"`
	// Timeout replaces the VM's stop_timeout for this stop.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Options configure a Supervisor.
type Options struct {
	// RunDir holds a runtime directory per VM (sockets, pidfiles).
	RunDir string
	// LogDir holds one log file per VM, <name>.log.
	LogDir string
	// StateDir holds one state record per VM, <name>.json.
	StateDir string
	// Drivers by name ("qemu", "bhyve", "exec").
	Drivers map[string]hypervisor.Driver
	// StrictHooks selects the owner and permission checks on hooks; the
	// zero value checks when the daemon runs as root.
	StrictHooks hooks.Strictness
	// HookGrace is how long a timed-out hook has between SIGTERM and
	// SIGKILL; zero means the hook runner's default.
	HookGrace time.Duration
	// HookDrain is how long hooks already running may go on once the
	// context ends (the daemon exits) before they are stopped; zero means
	// DefaultHookDrain, a negative value stops them at once. A hook that
	// finishes in time leaves its status for the next daemon, which then
	// does not run it again.
	HookDrain time.Duration
	// Logf receives the daemon's own messages (not per-VM ones). Nil
	// discards them.
	Logf func(format string, args ...any)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Supervisor holds every VM's actor.
type Supervisor struct {
	runDir, logDir, stateDir string
	drivers                  map[string]hypervisor.Driver
	strictHooks              hooks.Strictness
	hookGrace                time.Duration
	hookDrain                time.Duration
	logf                     func(string, ...any)
	now                      func() time.Time
	bus                      *Bus
	store                    *store // nil without a state directory
	// net sets up the networks the daemon owns; nil without a state
	// directory, where what it sets up would be forgotten.
	net *vmnet.Manager

	ctx context.Context
	wg  sync.WaitGroup
	// hooksRunning counts the hook processes running now.
	hooksRunning atomic.Int64

	reloadMu sync.Mutex
	reloads  []reloadWaiter

	mu   sync.Mutex
	vms  map[string]*vm
	logs map[string]*vmLog // one per file for the daemon's lifetime
}

// New returns a supervisor whose actors live until ctx ends. Cancelling ctx
// leaves every hypervisor running; only the actors stop.
func New(ctx context.Context, opts Options) *Supervisor {
	s := &Supervisor{
		runDir:      opts.RunDir,
		logDir:      opts.LogDir,
		stateDir:    opts.StateDir,
		drivers:     opts.Drivers,
		strictHooks: opts.StrictHooks,
		hookGrace:   opts.HookGrace,
		hookDrain:   opts.HookDrain,
		logf:        opts.Logf,
		now:         opts.Now,
		bus:         NewBus(),
		ctx:         ctx,
		vms:         make(map[string]*vm),
		logs:        make(map[string]*vmLog),
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.hookDrain == 0 {
		s.hookDrain = DefaultHookDrain
	}
	if s.stateDir != "" {
		s.bus.keepSeqIn(filepath.Join(s.stateDir, "events.seq"), s.logf)
		keep := ""
		if s.runDir != "" {
			keep = filepath.Join(s.runDir, keptDirName)
		}
		s.store = newStore(s.stateDir, keep, s.logf)
		s.net = vmnet.New(filepath.Join(s.stateDir, "network"), s.logf)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.store.run(ctx)
		}()
	}
	return s
}

// DefaultHookDrain is how long hooks in flight may finish when the daemon
// exits.
const DefaultHookDrain = 10 * time.Second

// Bus returns the event bus.
func (s *Supervisor) Bus() *Bus { return s.bus }

// Wait blocks until every actor and every piece of work it started (hooks,
// launches) has ended, after the context ended; then it closes the logs.
func (s *Supervisor) Wait() {
	if n := s.hooksRunning.Load(); n > 0 && s.ctx.Err() != nil && s.hookDrain > 0 {
		s.logf("waiting up to %s for %d running hook(s) to finish", statemachine.FormatDuration(s.hookDrain), n)
	}
	s.wg.Wait()
	if s.net != nil {
		// The guests keep their taps; the next daemon serves DHCP again.
		s.net.Close()
	}
	if s.store != nil {
		s.store.flush() // what the actors wrote last
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.logs {
		_ = l.Close()
	}
	s.bus.Close()
}

// logFor returns the VM's log, creating it the first time.
func (s *Supervisor) logFor(name string, cfg *settings) *vmLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.logs[name]; ok {
		return l
	}
	size, files := logLimits(cfg)
	l := newVMLog(filepath.Join(s.logDir, name+".log"), size, files)
	s.logs[name] = l
	return l
}

// add creates and starts the actor of a VM.
func (s *Supervisor) add(name string, cfg *settings, configErr string, initial statemachine.State) *vm {
	v := newVM(s, name, cfg, s.logFor(name, cfg), initial, time.Time{})
	v.configErr = configErr
	v.publishStatus()
	s.register(v)
	return v
}

// register adds an actor to the registry and starts it.
func (s *Supervisor) register(v *vm) {
	s.mu.Lock()
	s.vms[v.name] = v
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		v.run(s.ctx)
	}()
}

// forget removes an actor from the registry (called by the actor itself as
// it drops out).
func (s *Supervisor) forget(v *vm) {
	s.mu.Lock()
	if s.vms[v.name] == v {
		delete(s.vms, v.name)
	}
	_, again := s.vms[v.name] // a directory of that name came back
	s.mu.Unlock()
	s.removeRecord(v.name)
	if !again {
		s.releaseLeases(func(name string) bool { return name == v.name })
	}
	s.bus.Publish(Event{Kind: KindConfig, VM: v.name, Reason: "dropped"})
}

func (s *Supervisor) lookup(name string) (*vm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownVM, name)
	}
	return v, nil
}

// List returns the status of every VM, sorted by name.
func (s *Supervisor) List() []Status {
	s.mu.Lock()
	vms := make([]*vm, 0, len(s.vms))
	for _, v := range s.vms {
		vms = append(vms, v)
	}
	s.mu.Unlock()
	now := s.now()
	out := make([]Status, 0, len(vms))
	for _, v := range vms {
		out = append(out, v.current(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one VM's status.
func (s *Supervisor) Get(name string) (Status, error) {
	v, err := s.lookup(name)
	if err != nil {
		return Status{}, err
	}
	return v.current(s.now()), nil
}

// current is the VM's status as of now, with what its guest access
// parts know (the agent's addresses, the VNC relay's address).
func (v *vm) current(now time.Time) Status {
	st := v.status.Load().withRestarts(now)
	if st.instance != nil {
		st.IPAddresses = v.guestAddrs()
		st.VNCAddress = v.vncAddr()
	}
	return st
}

func (s *Supervisor) command(ctx context.Context, name string, c command) error {
	v, err := s.lookup(name)
	if err != nil {
		return err
	}
	return v.do(ctx, c)
}

// Start starts a VM (after the VMs it depends on). It returns once the
// start has begun; watch the events or the status for its progress.
func (s *Supervisor) Start(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.Start})
}

// Stop stops a VM: the guest is asked to power off and forced after the
// deadline. A VM that is still starting stops when its current step ends.
func (s *Supervisor) Stop(ctx context.Context, name string, opts StopOptions) error {
	return s.command(ctx, name, command{op: statemachine.Stop, stop: opts})
}

// Restart stops and relaunches a running VM's hypervisor without running
// the network and storage steps again. It does not count toward the
// restart budget.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.Restart})
}

// Pause freezes a running VM's guest.
func (s *Supervisor) Pause(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.Pause})
}

// Unpause thaws a paused VM's guest.
func (s *Supervisor) Unpause(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.Unpause})
}

// FailReset takes a VM out of failure mode and clears its restart history.
func (s *Supervisor) FailReset(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.FailReset})
}

// Suspend saves a running or paused VM's guest to a file in the state
// directory and takes the VM down to suspended; a start restores it. It
// returns once the suspend has begun.
func (s *Supervisor) Suspend(ctx context.Context, name string, opts SuspendOptions) error {
	return s.command(ctx, name, command{op: statemachine.Suspend, suspend: opts})
}

// Discard drops the saved guest of a suspended VM (or of a failed one
// whose restore did not work); the VM is then stopped.
func (s *Supervisor) Discard(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: statemachine.Discard})
}

// instance returns the running hypervisor of a VM for the abilities that
// need no state change (reset, NMI, screenshot, info).
func (s *Supervisor) instance(name string) (hypervisor.Instance, Status, error) {
	st, err := s.Get(name)
	if err != nil {
		return nil, st, err
	}
	if st.instance == nil {
		return nil, st, &statemachine.NotAllowedError{VM: name, Event: "use", State: st.State}
	}
	return st.instance, st, nil
}

func notSupported(st Status, what string) error {
	return fmt.Errorf("%w: the %s driver cannot %s (vm %s)", hypervisor.ErrNotSupported, st.Hypervisor, what, st.Name)
}

// Reset hard-resets a VM's guest, like the reset button. Hypervisors that
// run guests with reboots turned into exits (QEMU's -no-reboot, bhyve) end
// the process on a reset; the VM is then relaunched as for a user restart,
// without counting toward the restart budget.
func (s *Supervisor) Reset(ctx context.Context, name string) error {
	return s.command(ctx, name, command{op: opReset})
}

// NMI injects a non-maskable interrupt into a VM's guest.
func (s *Supervisor) NMI(ctx context.Context, name string) error {
	inst, st, err := s.instance(name)
	if err != nil {
		return err
	}
	n, ok := inst.(hypervisor.NMIer)
	if !ok {
		return notSupported(st, "inject an NMI")
	}
	s.logFor(name, nil).Printf("NMI requested")
	return n.NMI(ctx)
}

// Screenshot writes an image of a VM's display to w and returns its format.
func (s *Supervisor) Screenshot(ctx context.Context, name string, w io.Writer) (string, error) {
	inst, st, err := s.instance(name)
	if err != nil {
		return "", err
	}
	sc, ok := inst.(hypervisor.Screenshotter)
	if !ok {
		return "", notSupported(st, "take screenshots")
	}
	return sc.Screenshot(ctx, w)
}

// Info describes a running VM's hypervisor in detail.
func (s *Supervisor) Info(ctx context.Context, name string) (map[string]any, error) {
	inst, st, err := s.instance(name)
	if err != nil {
		return nil, err
	}
	in, ok := inst.(hypervisor.Inspector)
	if !ok {
		return nil, notSupported(st, "describe itself")
	}
	info, err := in.Info(ctx)
	if err != nil {
		return nil, err
	}
	if ga, ok := inst.(hypervisor.GuestAgent); ok && ga.HasGuestAgent() {
		var d hypervisor.GuestDetails
		var err error
		if v, _ := s.lookup(name); v != nil && v.agentAnswered(inst) {
			actx, cancel := context.WithTimeout(ctx, agentAsk)
			d, err = ga.GuestDetails(actx)
			cancel()
		} else {
			// Asking an agent that may not be there would hold up the
			// answer for as long as the ask is allowed.
			err = fmt.Errorf("the guest agent has not answered yet (is qemu-guest-agent running in the guest?)")
		}
		if d != (hypervisor.GuestDetails{}) {
			info["guest"] = d
		}
		if err != nil {
			errs, _ := info["errors"].(map[string]string)
			if errs == nil {
				errs = map[string]string{}
				info["errors"] = errs
			}
			errs["guest"] = err.Error()
		}
	}
	return info, nil
}

// LogPath returns the path of a VM's log file.
func (s *Supervisor) LogPath(name string) (string, error) {
	if _, err := s.lookup(name); err != nil {
		return "", err
	}
	return filepath.Join(s.logDir, name+".log"), nil
}

// FollowLog returns the lines written to a VM's log from now on; call stop
// when done. The channel closes when the reader falls behind or the daemon
// exits.
func (s *Supervisor) FollowLog(name string) (<-chan []byte, func(), error) {
	if _, err := s.lookup(name); err != nil {
		return nil, nil, err
	}
	ch, stop := s.logFor(name, nil).Follow()
	return ch, stop, nil
}

// startDeps starts the VMs name depends on (each after its own
// dependencies) and waits until all of them are up: running, with their
// running hook finished.
func (s *Supervisor) startDeps(ctx context.Context, name string, deps []string) error {
	sub := s.bus.Subscribe(0)
	defer func() { sub.Close() }() // the one in use when it returns
	waiting := make(map[string]bool)
	for _, d := range deps {
		st, err := s.Get(d)
		if err != nil {
			return fmt.Errorf("%s depends on %s, which does not exist", name, d)
		}
		if st.Up() {
			continue
		}
		if st.State == statemachine.Running || st.State == statemachine.Restarted {
			// Its running hook has not finished yet.
			waiting[d] = true
			continue
		}
		if st.State == statemachine.Failed {
			return fmt.Errorf("%s depends on %s, which is failed: %s", name, d, st.Reason)
		}
		if err := s.Start(ctx, d); err != nil && !errors.Is(err, statemachine.ErrNotAllowed) {
			return fmt.Errorf("%s depends on %s, which could not be started: %w", name, d, err)
		}
		waiting[d] = true
	}
	// Catch up with anything that happened before the subscription.
	for d := range waiting {
		if st, _ := s.Get(d); st.Up() {
			delete(waiting, d)
		}
	}
	for len(waiting) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-sub.C():
			if !ok || e.Kind == KindLost {
				sub.Close()
				sub = s.bus.Subscribe(0)
				for d := range waiting {
					if st, _ := s.Get(d); st.Up() {
						delete(waiting, d)
					}
				}
				continue
			}
			if !waiting[e.VM] || (e.Kind != KindTransition && e.Kind != KindHook) {
				continue
			}
			if st, _ := s.Get(e.VM); st.Up() {
				delete(waiting, e.VM)
				continue
			}
			if e.Kind != KindTransition {
				continue
			}
			switch e.To {
			case statemachine.Failed:
				return fmt.Errorf("%s depends on %s, which failed: %s", name, e.VM, e.Reason)
			case statemachine.Stopped, statemachine.Suspended:
				return fmt.Errorf("%s depends on %s, which %s", name, e.VM, e.To)
			}
		}
	}
	return nil
}

// waitSettled waits until a VM rests in stopped or failed, its hook done.
func (s *Supervisor) waitSettled(ctx context.Context, name string) error {
	sub := s.bus.Subscribe(0)
	defer func() { sub.Close() }() // the one in use when it returns
	for {
		st, err := s.Get(name)
		if err != nil {
			return nil // dropped: settled for good
		}
		if st.Settled() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not stop: %w", name, ctx.Err())
		case _, ok := <-sub.C():
			if !ok {
				sub = s.bus.Subscribe(0)
			}
		}
	}
}

// removeRecord deletes a dropped VM's state record.
func (s *Supervisor) removeRecord(name string) {
	if s.stateDir == "" {
		return
	}
	if err := os.Remove(filepath.Join(s.stateDir, name+".json")); err != nil && !os.IsNotExist(err) {
		s.logf("removing state record of %s: %v", name, err)
	}
	if s.store != nil {
		s.store.dropKept(name)
	}
}
