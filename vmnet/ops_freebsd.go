package vmnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// hostOps are FreeBSD's, through ifconfig(8). NAT there belongs to pf or
// ipfw, which the daemon does not drive.
type hostOps struct{}

func ifconfig(args ...string) (string, error) {
	out, err := exec.Command("/sbin/ifconfig", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ifconfig %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func exists(ifname string) bool {
	_, err := ifconfig(ifname)
	return err == nil
}

func (hostOps) exists(ifname string) bool { return exists(ifname) }

func (hostOps) bridgeExists(bridge string) error {
	out, err := ifconfig(bridge)
	if err != nil {
		return errors.New("no such interface")
	}
	if !strings.Contains(out, "groups: bridge") {
		return errors.New("is not an if_bridge(4) interface")
	}
	return nil
}

func (hostOps) createTap(tap string) error {
	if exists(tap) {
		return nil
	}
	out, err := ifconfig("tap", "create")
	if err != nil {
		return err
	}
	made := strings.TrimSpace(out)
	if _, err := ifconfig(made, "name", tap); err != nil {
		_, _ = ifconfig(made, "destroy")
		return err
	}
	return nil
}

func (hostOps) attach(tap, bridge string) error {
	out, err := ifconfig(bridge)
	if err != nil {
		return err
	}
	if strings.Contains(out, "member: "+tap+" ") {
		return nil
	}
	_, err = ifconfig(bridge, "addm", tap)
	return err
}

func (hostOps) setAddr(tap string, gw netip.Addr) error {
	out, err := ifconfig(tap)
	if err != nil {
		return err
	}
	if strings.Contains(out, "inet "+gw.String()+" ") {
		return nil
	}
	_, err = ifconfig(tap, "inet", gw.String()+"/31", "alias")
	return err
}

func (hostOps) up(tap string) error {
	_, err := ifconfig(tap, "up")
	return err
}

func (hostOps) deleteTap(tap string) error {
	if !exists(tap) {
		return nil
	}
	_, err := ifconfig(tap, "destroy")
	return err
}

func (hostOps) addNAT(string, string, netip.Addr) error {
	return errors.New("nat = true is supported on Linux only; on FreeBSD add a pf nat rule in the start_network hook")
}

func (hostOps) delNAT(string) error { return nil }
