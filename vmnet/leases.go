package vmnet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmstated/vmstated/atomicfile"
)

// leaseFile holds every local NIC's /31, by "vm/index". A lease outlives
// the VM's teardown: the guest gets the same address at every start, and
// across daemon restarts. It goes with the VM's config directory
// (Release), else the /31s of deleted VMs would fill the pool.
const leaseFile = "leases"

func (m *Manager) leasePath() string { return filepath.Join(m.dir, leaseFile) }

func (m *Manager) readLeases() (map[string]netip.Addr, error) {
	leases := map[string]netip.Addr{}
	data, err := os.ReadFile(m.leasePath())
	if errors.Is(err, os.ErrNotExist) {
		return leases, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &leases); err != nil {
		return nil, fmt.Errorf("%s: %w; move it aside to hand out new addresses", m.leasePath(), err)
	}
	return leases, nil
}

// lease returns the /31 of NIC index of vm: the one it had, while it lies
// in pool, else a free one. The host's end (the gateway) is the even
// address, the guest's the odd one.
func (m *Manager) lease(vm string, index int, pool netip.Prefix) (gw, guest netip.Addr, err error) {
	if !pool.IsValid() {
		pool = DefaultPool
	}
	pool = pool.Masked()
	if !pool.Addr().Is4() || pool.Bits() > 31 {
		return gw, guest, fmt.Errorf("pool %s: give an IPv4 prefix of /31 or larger, such as %s", pool, DefaultPool)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	leases, err := m.readLeases()
	if err != nil {
		return gw, guest, err
	}
	key := vm + "/" + strconv.Itoa(index)
	if a, ok := leases[key]; ok && pool.Contains(a) {
		return a, a.Next(), nil
	}
	used := map[netip.Addr]bool{}
	for k, a := range leases {
		if k != key {
			used[a] = true
		}
	}
	// Start where the VM's name points, so that addresses do not depend
	// on the order VMs first started in, and probe on from there.
	slots := uint64(1) << (31 - pool.Bits())
	h := fnv.New64a()
	h.Write([]byte(key))
	first := h.Sum64() % slots
	base := binary.BigEndian.Uint32(pool.Addr().AsSlice())
	for i := uint64(0); i < slots; i++ {
		slot := (first + i) % slots
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+uint32(slot*2))
		a := netip.AddrFrom4(b)
		if used[a] {
			continue
		}
		leases[key] = a
		if err := m.writeLeases(leases); err != nil {
			return gw, guest, fmt.Errorf("recording the address lease: %w", err)
		}
		return a, a.Next(), nil
	}
	return gw, guest, fmt.Errorf("pool %s is full (%d VMs hold a /31 of it); give this NIC a larger pool = ...;", pool, slots)
}

func (m *Manager) writeLeases(leases map[string]netip.Addr) error {
	data, err := json.MarshalIndent(leases, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(m.leasePath(), append(data, '\n'), atomicfile.Options{Durable: true})
}

// Release frees the /31s of the VMs for which gone is true (their config
// directories went away and they are at rest), so that other NICs can
// have them. It returns the VMs whose leases were freed.
func (m *Manager) Release(gone func(vm string) bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	leases, err := m.readLeases()
	if err != nil {
		return nil, err
	}
	var freed []string
	for k := range leases {
		vm, _, ok := strings.Cut(k, "/")
		if !ok || !gone(vm) {
			continue
		}
		delete(leases, k)
		if !slices.Contains(freed, vm) {
			freed = append(freed, vm)
		}
	}
	if len(freed) == 0 {
		return nil, nil
	}
	if err := m.writeLeases(leases); err != nil {
		return nil, fmt.Errorf("freeing the address leases of %s: %w", strings.Join(freed, ", "), err)
	}
	slices.Sort(freed)
	return freed, nil
}
