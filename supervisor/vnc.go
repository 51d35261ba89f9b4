package supervisor

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/tcprelay"
)

// vncPortFile keeps a VM's VNC port in its run directory, so that the
// port stays the same across QEMU and daemon restarts.
const vncPortFile = "vnc.port"

// vncListen is the address the VNC relays listen on unless the config
// says otherwise: this host only, as VNC itself is not encrypted.
const vncListen = "127.0.0.1"

// vmVNC is a VM's VNC relay (vnc = auto).
type vmVNC struct {
	mu    sync.Mutex // guards relay and password for readers outside the actor
	relay *tcprelay.Relay
	// password is the VNC password the running QEMU was given.
	password string
}

// vncPasswordFor returns the VNC password a launch with settings s gives
// QEMU: the configured one, or, with vnc_password = auto, the VM's own,
// which create makes up the first time; the record keeps it from then on.
// It runs in the VM's actor.
func (v *vm) vncPasswordFor(s *settings, create bool) string {
	if s == nil {
		return ""
	}
	if !s.vncPasswordAuto {
		if o, ok := s.spec.Options.(*qemu.Options); ok && o != nil {
			return o.VNCPassword
		}
		return ""
	}
	if v.vncAuto == "" && create {
		// VNC authentication uses 8 characters at most: 40 random bits
		// in base32.
		v.vncAuto = rand.Text()[:8]
	}
	return v.vncAuto
}

// showVNCPassword records the password QEMU runs with, for VNCPassword.
func (v *vm) showVNCPassword(pw string) {
	x := &v.access.vnc
	x.mu.Lock()
	x.password = pw
	x.mu.Unlock()
}

// VNCPassword is the password VNC clients of the VM are asked for, ""
// when there is none. Only those who may act on the VM are to see it.
func (s *Supervisor) VNCPassword(name string) (string, error) {
	v, err := s.lookup(name)
	if err != nil {
		return "", err
	}
	x := &v.access.vnc
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.password, nil
}

// syncVNC listens for VNC clients while the VM's hypervisor has a VNC
// socket to relay to, and stops once the VM is at rest. It runs in the
// VM's actor.
func (v *vm) syncVNC(s *Status) {
	x := &v.access.vnc
	x.mu.Lock()
	defer x.mu.Unlock()
	sock, host := "", ""
	if r, ok := s.instance.(hypervisor.VNCRelayed); ok && s.instance != nil {
		sock, host = r.VNCRelay()
	}
	if host == "" {
		host = vncListen
	}
	switch {
	case sock != "" && x.relay == nil:
		r, err := v.listenVNC(sock, host)
		if err != nil {
			v.log.Printf("VNC relay: %v", err)
			return
		}
		x.relay = r
	case x.relay != nil && s.instance == nil && atRest(s.State):
		x.relay.Close()
		x.relay = nil
	}
}

// listenVNC listens on the VM's port of before, or on a new one it
// records.
func (v *vm) listenVNC(sock, host string) (*tcprelay.Relay, error) {
	portFile := filepath.Join(v.sup.runDir, v.name, vncPortFile)
	if b, err := os.ReadFile(portFile); err == nil {
		if port, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && port > 0 && port < 65536 {
			r, err := tcprelay.Listen(net.JoinHostPort(host, strconv.Itoa(port)), sock)
			if err == nil {
				return r, nil
			}
			v.log.Printf("VNC relay: port %d, used before, is taken (%v); choosing another", port, err)
		}
	}
	r, err := tcprelay.Listen(net.JoinHostPort(host, "0"), sock)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", host, err)
	}
	if err := atomicfile.Write(portFile, []byte(strconv.Itoa(r.Addr().Port)+"\n"), atomicfile.Options{Mode: 0o640}); err != nil {
		v.log.Printf("VNC relay: recording the port: %v (it may change after a restart)", err)
	}
	return r, nil
}

// VNCAddress is where VNC clients reach a VM (vnc = auto), "" when the
// VM has no VNC relay now.
// One coming up (relaunched, re-adopted) is waited for until ctx ends.
func (s *Supervisor) VNCAddress(ctx context.Context, name string) (string, error) {
	v, err := s.lookup(name)
	if err != nil {
		return "", err
	}
	x := &v.access.vnc
	v.waitComingUp(ctx, func(st *Status) bool {
		r, ok := st.instance.(hypervisor.VNCRelayed)
		if !ok {
			return true // nothing to wait for
		}
		if sock, _ := r.VNCRelay(); sock == "" {
			return true
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.relay != nil
	})
	return v.vncAddr(), nil
}

// vncAddr is where the VM's VNC relay listens, "" when it does not.
func (v *vm) vncAddr() string {
	x := &v.access.vnc
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.relay == nil {
		return ""
	}
	return x.relay.Addr().String()
}
