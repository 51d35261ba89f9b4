package config

import (
	"fmt"
	"net"
	"os"

	"github.com/vmstated/vmstated/ucl"
)

// HostDiagnostics warns of VMs whose config is valid but that cannot run
// on a host running goos (runtime.GOOS): bhyve exists only on FreeBSD.
// Loading stays host-neutral, so that a config root can be checked on
// another machine; the daemon, vmstated -n and vmstatedctl check add these
// for the host they run on. A bhyve binary that exists at the configured
// path (a stand-in, as the tests use on Linux) counts as runnable.
func HostDiagnostics(s *Snapshot, goos string) Diagnostics {
	var out Diagnostics
	for _, name := range s.Names() {
		out = append(out, missingBridges(s.VMs[name])...)
	}
	for _, name := range s.Names() {
		vm := s.VMs[name]
		if vm.Hypervisor != HypervisorBhyve || goos == "freebsd" || vm.Bhyve == nil {
			continue
		}
		if fi, err := os.Stat(vm.Bhyve.Binary); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			continue
		}
		out = append(out, Diagnostic{
			Pos:      hypervisorPos(vm),
			Key:      "hypervisor",
			Severity: Warning,
			Msg: fmt.Sprintf("bhyve runs only on FreeBSD, and %s is not on this %s host: %s cannot start here; use hypervisor = qemu or exec on this host",
				vm.Bhyve.Binary, goos, vm.Name),
		})
	}
	return out
}

// hypervisorPos is where vm's hypervisor key was written, else (the host's
// default chose bhyve) the top of its config file.
func hypervisorPos(vm *VM) ucl.Pos {
	if p, ok := vm.positions["hypervisor"]; ok {
		return p
	}
	return ucl.Pos{File: vm.File, Line: 1, Col: 1}
}

// missingBridges warns of the bridges a VM's nic { type = bridge; } names
// that this host lacks: its start would fail until they exist.
func missingBridges(vm *VM) Diagnostics {
	if vm.Hypervisor != HypervisorQEMU || vm.QEMU == nil {
		return nil
	}
	var out Diagnostics
	for _, n := range vm.QEMU.NICs {
		if n.Type != NICBridge {
			continue
		}
		if _, err := net.InterfaceByName(n.Bridge); err == nil {
			continue
		}
		pos, ok := vm.positions["qemu"]
		if !ok {
			pos = ucl.Pos{File: vm.File, Line: 1, Col: 1}
		}
		out = append(out, Diagnostic{
			Pos: pos, Key: "qemu.nic.bridge", Severity: Warning,
			Msg: fmt.Sprintf("bridge %s does not exist on this host: %s cannot start until it does; create it (ip link add %s type bridge) or name another", n.Bridge, vm.Name, n.Bridge),
		})
	}
	return out
}
