//go:build linux

package tests

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// stop -a of more VMs than the caller may hold connections to the daemon
// (-C) stops every one of them: the command stays within the caller's
// connections, as it must over ssh, where each connection is an ssh
// process of its own.
func TestStopAllWithinTheConnectionCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run vmstatedctl as another user")
	}
	const uid, gid = 65534, 65534 // nobody
	t.Parallel()
	e := newEnv(t)
	ctl := e.public()
	var vms []string
	for i := 0; i < 20; i++ {
		vms = append(vms, e.addVM(fmt.Sprintf("cap%02d", i), sleeper("    owner = 65534;\n")))
	}
	d := e.start("-C", "8")
	for _, vm := range vms {
		d.do(vm, api.ActionStart)
	}
	for _, vm := range vms {
		d.waitUp(vm)
	}
	cmd := exec.Command(ctl, "-s", e.socket, "stop", "-a")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Errorf("stop -a of %d VMs with 8 connections: %v\n%s%s", len(vms), err, out.String(), errOut.String())
	}
	for _, vm := range vms {
		if st := d.get(vm); st.State != api.StateStopped {
			t.Errorf("%s is %s after stop -a", vm, st.State)
		}
	}
}
