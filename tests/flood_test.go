//go:build linux

package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
)

// floodEnv makes the test binary a flood process instead of running the
// tests: it opens that many connections to the socket in floodSockEnv,
// sends nothing on them, makes one real request, reports, and holds the
// connections until its stdin closes.
const floodEnv, floodSockEnv = "VMSTATED_E2E_FLOOD", "VMSTATED_E2E_FLOOD_SOCKET"

// floodReport is what a flood process prints once its connections are
// open.
type floodReport struct {
	UID     int    `json:"uid"`
	Dialled int    `json:"dialled"`
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Error   string `json:"error"`
}

func floodMain() int {
	n, err := strconv.Atoi(os.Getenv(floodEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sock := os.Getenv(floodSockEnv)
	conns := make([]net.Conn, 0, n)
	deadline := time.Now().Add(guard)
	for len(conns) < n {
		c, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline) {
			// The listen queue is full while the daemon turns the
			// ones before away.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "connection %d: %v\n", len(conns), err)
			return 1
		}
		conns = append(conns, c)
	}
	r := floodReport{UID: os.Getuid(), Dialled: len(conns)}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c := api.NewClient(sock)
	_, err = c.List(ctx)
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		r.Status, r.Code, r.Error = ae.Status, ae.Code, ae.Message
	case err != nil:
		r.Error = err.Error()
	default:
		r.Status = 200
	}
	c.Close()
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	// Held to the end: a connection the program no longer refers to is
	// closed by the garbage collector, and the daemon then lets in as
	// many others (the user's own request among them, now and then).
	runtime.KeepAlive(conns)
	return 0
}

// The real daemon, and one unprivileged user holding 20,000 idle
// connections to its socket: the user's own request is refused with the
// reason, the daemon's descriptors grow only by the user's share, root's
// status is answered, and a VM starts, restarts and stops with its record
// saved.
func TestSocketFlood(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the flood as another user")
	}
	const uid, gid = 65534, 65534 // nobody
	const total = 20000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Each flood process holds what its hard limit allows; more
	// processes for more.
	per := min(int(lim.Max)-100, 10000)
	if per < 100 {
		t.Skipf("the descriptor limit %d is too low to flood from", lim.Max)
	}
	e := newEnv(t)
	ctl := e.public()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	flooder := filepath.Join(filepath.Dir(ctl), "flood.test")
	copyFile(t, self, flooder, 0o755)
	vm := e.addVM("flood", sleeper(""))
	d := e.start()
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	// How long root's status takes, for the log: the client's own start
	// and exit left out (a -race build sleeps 1 s at exit).
	status := func(when string) {
		t.Helper()
		t0 := time.Now()
		if _, err := d.c.List(ctx(t)); err != nil {
			t.Fatalf("root's status %s: %v", when, err)
		}
		t.Logf("root's status answered in %v %s", time.Since(t0).Round(time.Microsecond), when)
	}
	status("before the flood")

	begin := time.Now()
	for left := total; left > 0; left -= per {
		k := min(left, per)
		cmd := exec.Command(flooder)
		cmd.Env = []string{floodEnv + "=" + strconv.Itoa(k), floodSockEnv + "=" + e.socket, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err != nil {
			t.Fatalf("flood process: %v", err)
		}
		var r floodReport
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("flood process said %q: %v", line, err)
		}
		if r.UID != uid || r.Dialled != k {
			t.Fatalf("flood process: %+v, want uid %d and %d connections", r, uid, k)
		}
		if r.Status != 429 || r.Code != api.CodeTooManyConnections {
			t.Errorf("the flooding user's own request: %+v, want 429 %s", r, api.CodeTooManyConnections)
		}
	}
	t.Logf("%d connections of uid %d open after %v", total, uid, time.Since(begin).Round(time.Millisecond))

	// The daemon holds the user's share (64), at most as many refused
	// connections waiting for their request, and a few of its own.
	if n := fds(); n > before+64+64+32 {
		t.Errorf("the daemon has %d descriptors open, %d before the flood", n, before)
	} else {
		t.Logf("the daemon has %d descriptors open, %d before the flood", n, before)
	}
	status("during the flood")
	if out, err := exec.Command(ctlBin, "-s", e.socket, "status").CombinedOutput(); err != nil {
		t.Fatalf("root's vmstatedctl status during the flood: %v: %s", err, out)
	}
	d.do(vm, api.ActionStart)
	first := d.waitUp(vm).PID
	d.do(vm, api.ActionRestart)
	waitUntil(t, vm+" running again under a new pid", func() bool {
		st := d.get(vm)
		return st.State == api.StateRunning && st.PID != 0 && st.PID != first
	})
	d.do(vm, api.ActionStop)
	if st := d.waitState(vm, api.StateStopped); st.RecordError != "" {
		t.Errorf("%s's record is unsaved: %s", vm, st.RecordError)
	}
}
