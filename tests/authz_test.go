//go:build linux

package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmstated/vmstated/api"
)

// A user who is not root sees and controls only the VMs they own, as the
// daemon learns from the socket's peer credentials.
func TestOwnerControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run vmstatedctl as another user")
	}
	const uid, gid = 65534, 65534 // nobody
	t.Parallel()
	e := newEnv(t)
	ctl := e.public()

	mine := e.addVM("mine", sleeper("    owner = 65534;\n"))
	other := e.addVM("other", sleeper(""))
	d := e.start()

	asNobody := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(ctl, append([]string{"-s", e.socket}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		var o, se strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &se
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), se.String(), code
	}

	out, errOut, code := asNobody("-o", "json", "status")
	var list []api.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("status as nobody: exit %d: %s%s", code, out, errOut)
	}
	if len(list) != 1 || list[0].Name != mine {
		t.Errorf("nobody sees %+v, want only %s", list, mine)
	}
	if _, errOut, code := asNobody("start", other); code != 1 || !strings.Contains(errOut, "permission") && !strings.Contains(errOut, "no such") {
		t.Errorf("nobody starting %s: exit %d, %q; want it refused", other, code, errOut)
	}
	if st := d.get(other); st.State != api.StateStopped {
		t.Errorf("%s is %s after a refused start", other, st.State)
	}
	if out, errOut, code := asNobody("start", "-w", mine); code != 0 {
		t.Fatalf("nobody starting own %s: exit %d: %s%s", mine, code, out, errOut)
	}
	st := d.get(mine)
	if out, errOut, code := asNobody("stop", "-w", mine); code != 0 {
		t.Fatalf("nobody stopping own %s: exit %d: %s%s", mine, code, out, errOut)
	}
	waitGone(t, st.PID)
}

// public moves the env's socket to a directory any user can reach, and
// puts a copy of vmstatedctl there, for tests that run it as another user.
func (e *env) public() (ctl string) {
	e.t.Helper()
	pub, err := os.MkdirTemp("", "e2ep")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		e.t.Fatal(err)
	}
	ctl = filepath.Join(pub, "vmstatedctl")
	copyFile(e.t, ctlBin, ctl, 0o755)
	e.socket = filepath.Join(pub, "ctl.sock")
	return ctl
}

// copyFile copies a program through cp(1): written in a process of its
// own, the copy is never open for writing in this one, where a fork by
// another test could carry the descriptor into a child for a moment and
// make running the copy fail with "text file busy".
func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	if out, err := exec.Command("cp", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v: %s", from, to, err, out)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}
