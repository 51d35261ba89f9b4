// Package vmnet sets up the host side of the networks the daemon owns: a
// tap per NIC, attached to a bridge (type bridge) or given a private /31
// with a DHCP server bound to that tap alone and optional masquerading
// (type local). What it sets up is written to a state file per VM before
// it is made, so that a later daemon finds it again (Resume) or removes it
// (Teardown), whatever became of the daemon that made it.
package vmnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vmstated/vmstated/atomicfile"
)

// NIC types the daemon sets up.
const (
	TypeBridge = "bridge"
	TypeLocal  = "local"
)

// DefaultPool is where local NICs get their /31 from unless they name a
// pool of their own: the shared address space of RFC 6598, as vmd uses.
var DefaultPool = netip.MustParsePrefix("100.64.0.0/10")

// NIC is one network device whose host side the daemon sets up.
type NIC struct {
	// Type is TypeBridge or TypeLocal.
	Type string
	// Tap is the tap device's name (see TapName).
	Tap string
	// Bridge is the bridge the tap joins (TypeBridge).
	Bridge string
	// Pool is where a local NIC's /31 comes from; the zero value means
	// DefaultPool.
	Pool netip.Prefix
	// NAT masquerades what the guest sends out of other interfaces.
	NAT bool
	// DNS are the name servers the DHCP server hands out; empty means the
	// host's own (from /etc/resolv.conf), else the gateway.
	DNS []netip.Addr
}

// Spec is what a VM needs set up.
type Spec struct {
	VM string
	// Hostname is handed to the guest by DHCP; empty means VM.
	Hostname string
	NICs     []NIC
}

// Link is what was set up for one NIC: what the state file holds and
// what the status shows.
type Link struct {
	Type   string `json:"type"`
	Tap    string `json:"tap"`
	Bridge string `json:"bridge,omitempty"`
	// Gateway is the host's end of a local NIC's /31, Address the guest's.
	Gateway netip.Addr `json:"gateway,omitzero"`
	Address netip.Addr `json:"address,omitzero"`
	// Table is the nftables table (family ip) holding the NIC's
	// masquerading; empty without nat.
	Table    string       `json:"nat_table,omitempty"`
	DNS      []netip.Addr `json:"dns,omitempty"`
	Hostname string       `json:"hostname,omitempty"`
}

// State is what is set up for one VM.
type State struct {
	Version int    `json:"version"`
	VM      string `json:"vm"`
	Links   []Link `json:"links"`
}

// Taps returns the tap devices, in NIC order.
func (s *State) Taps() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.Links))
	for i, l := range s.Links {
		out[i] = l.Tap
	}
	return out
}

// links returns the links; none for a nil state.
func (s *State) links() []Link {
	if s == nil {
		return nil
	}
	return s.Links
}

const stateVersion = 1

// TapName is the tap device a NIC of vm gets when the config names none:
// "vm", a hash of the VM's name, and the NIC's position. Interface names
// have at most 15 characters, fewer than VM names, so the name itself
// cannot be used.
func TapName(vm string, index int) string {
	h := fnv.New32a()
	h.Write([]byte(vm))
	return fmt.Sprintf("vm%08xn%d", h.Sum32(), index)
}

// Manager sets up and tears down the networks of every VM. Its methods
// are safe for concurrent use; the work of one VM is serialised by the
// VM's own actor.
type Manager struct {
	dir  string
	logf func(string, ...any)
	ops  ops

	// claim serialises the part of Setup that decides which taps are
	// whose, up to the state file that records it: two VMs whose configs
	// name the same ifname cannot both take it.
	claim sync.Mutex

	mu      sync.Mutex // guards leases, servers and current
	servers map[string]*dhcpServer
	current map[string]*State // by VM: what is set up, for the status
}

// New returns a manager whose state lives in dir (created on first use).
func New(dir string, logf func(string, ...any)) *Manager {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Manager{dir: dir, logf: logf, ops: hostOps{}, servers: make(map[string]*dhcpServer), current: make(map[string]*State)}
}

func (m *Manager) statePath(vm string) string { return filepath.Join(m.dir, vm+".json") }

// Load returns the state file of vm; nil when there is none.
func (m *Manager) Load(vm string) (*State, error) {
	data, err := os.ReadFile(m.statePath(vm))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w; %s", m.statePath(vm), err, m.unreadable(vm))
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d, this daemon reads %d; %s", m.statePath(vm), s.Version, stateVersion, m.unreadable(vm))
	}
	if s.VM != vm {
		return nil, fmt.Errorf("%s: it is the record of VM %q; %s", m.statePath(vm), s.VM, m.unreadable(vm))
	}
	return &s, nil
}

// unreadable is what to do about a state file that cannot be used: what
// it recorded is left for a person to remove.
func (m *Manager) unreadable(vm string) string {
	tap := strings.TrimSuffix(TapName(vm, 0), "0")
	return fmt.Sprintf("the VM's network can be neither set up nor removed while it is there: remove what is left of it (its taps, %sN unless the config names them, and the nftables tables ip %s), then the file",
		tap, natTable(vm, 0)[:len(natTable(vm, 0))-1]+"N")
}

func (m *Manager) save(s *State) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(m.statePath(s.VM), append(data, '\n'), atomicfile.Options{})
}

// Current returns what is set up for vm as far as this daemon knows
// (set up or resumed by it); nil when nothing is.
func (m *Manager) Current(vm string) *State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current[vm]
}

func (m *Manager) setCurrent(vm string, s *State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s == nil {
		delete(m.current, vm)
	} else {
		m.current[vm] = s
	}
}

// Known lists the VMs that have a state file: what a new daemon has to
// resume or tear down.
func (m *Manager) Known() []string {
	entries, _ := os.ReadDir(m.dir)
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out
}

// Setup makes what spec needs: it is recorded first, then made, and what
// already exists (a retried start, a daemon restart in the middle) is
// taken as it is. On failure what was made is removed again.
func (m *Manager) Setup(ctx context.Context, spec Spec) (*State, error) {
	if len(spec.NICs) == 0 {
		return nil, nil
	}
	m.claim.Lock()
	claimed := true
	defer func() {
		if claimed {
			m.claim.Unlock()
		}
	}()
	old, err := m.Load(spec.VM)
	if err != nil {
		return nil, err
	}
	others := m.othersTaps(spec.VM)
	s := &State{Version: stateVersion, VM: spec.VM}
	host := spec.Hostname
	if host == "" {
		host = spec.VM
	}
	for i, n := range spec.NICs {
		l := Link{Type: n.Type, Tap: n.Tap, Bridge: n.Bridge}
		// A tap this VM did not make (its state file names every tap
		// it made, before making it) belongs to someone else: taking it
		// would hand it to this guest, and the teardown would remove it.
		if m.ops.exists(n.Tap) && !slices.Contains(old.Taps(), n.Tap) {
			return nil, fmt.Errorf("nic %d: an interface %s exists already and is not this VM's; set nic { ifname = ...; } to a name no other interface has, or remove it", i+1, n.Tap)
		}
		if vm, ok := others[n.Tap]; ok {
			return nil, fmt.Errorf("nic %d: tap %s is VM %s's; give one of the two another nic { ifname = ...; }", i+1, n.Tap, vm)
		}
		switch n.Type {
		case TypeBridge:
			if err := m.ops.bridgeExists(n.Bridge); err != nil {
				return nil, fmt.Errorf("nic %d: bridge %s: %w; create the bridge (ip link add %s type bridge) or set nic { bridge = ...; } to one that exists", i+1, n.Bridge, err, n.Bridge)
			}
		case TypeLocal:
			gw, guest, err := m.lease(spec.VM, i, n.Pool)
			if err != nil {
				return nil, fmt.Errorf("nic %d: %w", i+1, err)
			}
			l.Gateway, l.Address, l.Hostname = gw, guest, host
			l.DNS = n.DNS
			if len(l.DNS) == 0 {
				l.DNS = hostNameservers()
			}
			if len(l.DNS) == 0 {
				l.DNS = []netip.Addr{gw}
			}
			if n.NAT {
				l.Table = natTable(spec.VM, i)
			}
		default:
			return nil, fmt.Errorf("nic %d: type %q is not one the daemon sets up", i+1, n.Type)
		}
		s.Links = append(s.Links, l)
	}
	// What an earlier set-up made that this one does not want (the
	// config changed in between) goes first.
	for _, ol := range old.links() {
		if !slices.ContainsFunc(s.Links, func(l Link) bool { return l.Tap == ol.Tap && l.Table == ol.Table }) {
			if err := m.removeLink(ol); err != nil {
				return nil, err
			}
		}
	}
	// Recorded before anything is made: a daemon that dies half-way
	// leaves a file that names all of it, and Teardown removes what
	// exists.
	if err := m.save(s); err != nil {
		return nil, fmt.Errorf("network state not saved, so nothing was set up: %w", err)
	}
	claimed = false
	m.claim.Unlock()
	for _, l := range s.Links {
		if err := m.makeLink(l); err != nil {
			if errors.Is(err, os.ErrPermission) {
				err = fmt.Errorf("%w; making taps, addresses and NAT needs root (CAP_NET_ADMIN): run the daemon as root, or use nic { type = user; }", err)
			}
			if terr := m.Teardown(context.WithoutCancel(ctx), spec.VM); terr != nil {
				m.logf("%s: removing the network after a failed set-up: %v", spec.VM, terr)
			}
			return nil, err
		}
	}
	m.setCurrent(spec.VM, s)
	return s, nil
}

// othersTaps are the taps the state files of VMs other than vm name, by
// tap: set up, or being set up, for them.
func (m *Manager) othersTaps(vm string) map[string]string {
	out := map[string]string{}
	for _, other := range m.Known() {
		if other == vm {
			continue
		}
		s, err := m.Load(other)
		if err != nil {
			continue
		}
		for _, t := range s.Taps() {
			out[t] = other
		}
	}
	return out
}

// makeLink makes one link, taking what already exists.
func (m *Manager) makeLink(l Link) error {
	if err := m.ops.createTap(l.Tap); err != nil {
		return fmt.Errorf("creating tap %s: %w", l.Tap, err)
	}
	switch l.Type {
	case TypeBridge:
		if err := m.ops.attach(l.Tap, l.Bridge); err != nil {
			return fmt.Errorf("attaching tap %s to bridge %s: %w", l.Tap, l.Bridge, err)
		}
	case TypeLocal:
		if err := m.ops.setAddr(l.Tap, l.Gateway); err != nil {
			return fmt.Errorf("giving tap %s the address %s/31: %w", l.Tap, l.Gateway, err)
		}
	}
	if err := m.ops.up(l.Tap); err != nil {
		return fmt.Errorf("bringing tap %s up: %w", l.Tap, err)
	}
	if l.Type != TypeLocal {
		return nil
	}
	if l.Table != "" {
		if err := m.ops.addNAT(l.Table, l.Tap, l.Address); err != nil {
			return fmt.Errorf("masquerading for %s (nftables table ip %s): %w", l.Address, l.Table, err)
		}
	}
	return m.serve(l)
}

// Resume finds again what an earlier daemon set up for vm: taps, addresses
// and NAT are checked and completed where something went missing, and the
// DHCP servers, which lived in that daemon, run again. Nil, nil when vm
// has nothing set up.
func (m *Manager) Resume(vm string) (*State, error) {
	s, err := m.Load(vm)
	if err != nil || s == nil {
		return s, err
	}
	m.setCurrent(vm, s)
	for _, l := range s.Links {
		if err := m.makeLink(l); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Teardown removes what is set up for vm (the DHCP servers, NAT tables
// and taps its state file names), then the file. What is already gone is
// no error; the file stays until everything it names is gone.
func (m *Manager) Teardown(_ context.Context, vm string) error {
	s, err := m.Load(vm)
	if err != nil || s == nil {
		if s == nil && err == nil {
			m.setCurrent(vm, nil)
		}
		return err
	}
	var errs []error
	for _, l := range s.Links {
		if err := m.removeLink(l); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	m.setCurrent(vm, nil)
	if err := os.Remove(m.statePath(vm)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// removeLink removes what makeLink made for l; what is gone already is no
// error.
func (m *Manager) removeLink(l Link) error {
	m.stopServing(l.Tap)
	var errs []error
	if l.Table != "" {
		if err := m.ops.delNAT(l.Table); err != nil {
			errs = append(errs, fmt.Errorf("removing nftables table ip %s: %w", l.Table, err))
		}
	}
	if err := m.ops.deleteTap(l.Tap); err != nil {
		errs = append(errs, fmt.Errorf("removing tap %s: %w", l.Tap, err))
	}
	return errors.Join(errs...)
}

// Close stops every DHCP server (the daemon exits); taps, addresses and
// NAT stay for the guests, and the next daemon serves them again.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for tap, srv := range m.servers {
		srv.close()
		delete(m.servers, tap)
	}
}

// natTable names the nftables table of one NIC's masquerading; one table
// per NIC, so removing it removes exactly the rules the daemon added.
func natTable(vm string, index int) string {
	return fmt.Sprintf("vmstated-%s-%d", vm, index)
}

// hostNameservers returns the IPv4 name servers of /etc/resolv.conf that
// a guest can reach (loopback ones are the host's own).
func hostNameservers() []netip.Addr {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() || a.IsLoopback() || slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}
