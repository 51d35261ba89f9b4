//go:build linux

package tests

import (
	"bytes"
	"crypto/des"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/bits"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
)

// rfbAuth does an RFB 3.8 handshake with VNC authentication and returns
// the server's SecurityResult (0: accepted).
func rfbAuth(t *testing.T, addr, password string) uint32 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(guard))
	version := make([]byte, 12)
	if _, err := io.ReadFull(c, version); err != nil {
		t.Fatalf("reading the RFB version through %s: %v", addr, err)
	}
	if string(version) != "RFB 003.008\n" {
		t.Fatalf("the server says %q, want RFB 003.008", version)
	}
	c.Write(version)
	var n [1]byte
	io.ReadFull(c, n[:])
	types := make([]byte, n[0])
	io.ReadFull(c, types)
	if !bytes.Contains(types, []byte{2}) {
		t.Fatalf("security types %v, want VNC authentication (2)", types)
	}
	c.Write([]byte{2})
	challenge := make([]byte, 16)
	if _, err := io.ReadFull(c, challenge); err != nil {
		t.Fatal(err)
	}
	// The key is the password, zero-padded to 8 bytes, each byte's bits
	// reversed.
	key := make([]byte, 8)
	copy(key, password)
	for i := range key {
		key[i] = bits.Reverse8(key[i])
	}
	block, err := des.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 16)
	block.Encrypt(resp[:8], challenge[:8])
	block.Encrypt(resp[8:], challenge[8:])
	c.Write(resp)
	var result [4]byte
	if _, err := io.ReadFull(c, result[:]); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(result[:])
}

// vnc = auto: the daemon listens on a loopback TCP port and relays to
// QEMU's VNC socket; the password from the config, or the one the daemon
// made up (vnc_password = auto), is asked for; status, info and
// vmstatedctl vnc show the address, and vnc the password; port and
// passwords are the same after a daemon restart.
func TestVNCRelay(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	t.Parallel()
	e := newEnv(t)
	given := e.addVM("vnc", `    hypervisor = qemu;
    memory = 64;
    qemu { accel = tcg; vga = std; vnc = auto; vnc_password = "s3cret"; }
`)
	// No OS to answer the power button: a restart forces it after 1 s.
	auto := e.addVM("vncauto", `    hypervisor = qemu;
    memory = 64;
    stop_timeout = 1;
    qemu { accel = tcg; vga = std; vnc = auto; vnc_password = auto; }
`)
	d := e.start()
	type vnc struct{ VM, Address, Password string }
	look := func(vm string) vnc {
		t.Helper()
		out, errs, code := e.ctl("-o", "json", "vnc", vm)
		var v vnc
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !strings.HasPrefix(v.Address, "127.0.0.1:") || v.Password == "" {
			t.Fatalf("vmstatedctl -o json vnc %s: exit %d, %q %q", vm, code, out, errs)
		}
		text, _, _ := e.ctl("vnc", vm)
		if lines := strings.Split(strings.TrimSpace(text), "\n"); lines[0] != v.Address || len(lines) != 2 || lines[1] != "password: "+v.Password {
			t.Errorf("vmstatedctl vnc %s printed %q, want the address, then the password", vm, text)
		}
		if st := d.get(vm); st.VNCAddress != v.Address {
			t.Errorf("status of %s: vnc_address %q, want %q", vm, st.VNCAddress, v.Address)
		}
		if out, _, _ := e.ctl("status", vm); !strings.Contains(out, v.Address) {
			t.Errorf("vmstatedctl status %s lacks the VNC address %s:\n%s", vm, v.Address, out)
		}
		return v
	}
	check := func(v vnc) {
		t.Helper()
		if r := rfbAuth(t, v.Address, v.Password); r != 0 {
			t.Errorf("%s, the right password: SecurityResult %d, want 0", v.VM, r)
		}
		if r := rfbAuth(t, v.Address, "wrong"); r == 0 {
			t.Errorf("%s: a wrong password was accepted", v.VM)
		}
	}
	before := map[string]vnc{}
	for _, vm := range []string{given, auto} {
		d.do(vm, api.ActionStart)
		d.waitUp(vm)
		v := look(vm)
		check(v)
		before[vm] = v
	}
	if before[given].Password != "s3cret" {
		t.Errorf("the configured password shows as %q", before[given].Password)
	}
	if p := before[auto].Password; len(p) != 8 || p == "auto" {
		t.Errorf("the made-up password is %q, want 8 random characters", p)
	}

	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d", code)
	}
	d = e.start()
	for _, vm := range []string{given, auto} {
		d.waitUp(vm)
		if v := look(vm); v != before[vm] {
			t.Errorf("after a daemon restart VNC of %s is %+v, was %+v", vm, v, before[vm])
		}
		check(before[vm])
	}
	// A relaunched QEMU gets the same made-up password and port.
	pid := d.get(auto).PID
	d.do(auto, api.ActionRestart)
	d.waitStatus(auto, "relaunched", func(st api.Status) bool {
		return st.State == api.StateRunning && st.Hook == "" && st.PID != 0 && st.PID != pid
	})
	if v := look(auto); v != before[auto] {
		t.Errorf("after a restart of the VM its VNC is %+v, was %+v", v, before[auto])
	}
	check(before[auto])

	// At rest, nothing listens.
	for _, vm := range []string{given, auto} {
		if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		d.waitState(vm, api.StateStopped)
		if c, err := net.Dial("tcp", before[vm].Address); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections with the VM stopped", before[vm].Address)
		}
		if _, errs, code := e.ctl("vnc", vm); code == 0 {
			t.Errorf("vmstatedctl vnc of a stopped VM succeeded: %q", errs)
		}
	}
}
