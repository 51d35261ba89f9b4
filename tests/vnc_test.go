//go:build linux

package tests

import (
	"bytes"
	"crypto/des"
	"encoding/binary"
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
// QEMU's VNC socket; the password from the config is asked for; the port
// is the same after a daemon restart.
func TestVNCRelay(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("vnc", `    hypervisor = qemu;
    memory = 64;
    qemu { accel = tcg; vga = std; vnc = auto; vnc_password = "s3cret"; }
`)
	d := e.start()
	d.do(vm, api.ActionStart)
	d.waitUp(vm)
	out, errs, code := e.ctl("vnc", vm)
	addr := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("vmstatedctl vnc: exit %d, %q %q", code, out, errs)
	}
	if r := rfbAuth(t, addr, "s3cret"); r != 0 {
		t.Errorf("the right password: SecurityResult %d, want 0", r)
	}
	if r := rfbAuth(t, addr, "wrong"); r == 0 {
		t.Error("a wrong password was accepted")
	}

	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d", code)
	}
	d = e.start()
	d.waitUp(vm)
	out, _, _ = e.ctl("vnc", vm)
	if again := strings.TrimSpace(out); again != addr {
		t.Errorf("after a daemon restart VNC is at %q, was %q", again, addr)
	}
	if r := rfbAuth(t, addr, "s3cret"); r != 0 {
		t.Errorf("after a daemon restart: SecurityResult %d, want 0", r)
	}

	// At rest, nothing listens.
	if _, err := d.c.Stop(ctx(t), vm, api.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d.waitState(vm, api.StateStopped)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections with the VM stopped", addr)
	}
	if _, errs, code := e.ctl("vnc", vm); code == 0 {
		t.Errorf("vmstatedctl vnc of a stopped VM succeeded: %q", errs)
	}
}
