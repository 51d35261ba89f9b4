package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// floodResult is what a flood process reports once all its connections
// are open.
type floodResult struct {
	UID     int    `json:"uid"`
	Dialled int    `json:"dialled"`
	Status  int    `json:"status"` // of the request it made on top
	Code    string `json:"code"`
	Error   string `json:"error"`
}

// floodMain opens VMSTATED_TEST_FLOOD connections to the socket in
// VMSTATED_TEST_SOCKET and sends nothing on them; then it makes one real
// request, reports, and holds the connections until its stdin closes.
func floodMain() int {
	n, err := strconv.Atoi(os.Getenv("VMSTATED_TEST_FLOOD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sock := os.Getenv("VMSTATED_TEST_SOCKET")
	conns := make([]net.Conn, 0, n)
	deadline := time.Now().Add(guard)
	backoff := time.Millisecond
	for len(conns) < n {
		c, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline) {
			// The listen queue is full: the daemon is busy accepting
			// (and refusing) the ones before.
			time.Sleep(backoff)
			backoff = min(2*backoff, 50*time.Millisecond)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "connection %d: %v\n", len(conns), err)
			return 1
		}
		backoff = time.Millisecond
		conns = append(conns, c)
	}
	res := floodResult{UID: os.Getuid(), Dialled: len(conns)}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c := api.NewClient(sock)
	_, err = c.List(ctx)
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		res.Status, res.Code, res.Error = ae.Status, ae.Code, ae.Message
	case err != nil:
		res.Error = err.Error()
	default:
		res.Status = 200
	}
	c.Close()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// testUser creates a system user for the test and removes it afterwards.
func testUser(t *testing.T) *user.User {
	t.Helper()
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "vmsflood" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testBinary copies the test binary where another user may run it (its
// own directory may be closed to others).
func testBinary(t *testing.T, d *daemon) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.dir, "client.test")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	// Copied by cp(1), never open for writing here, where a concurrent
	// fork could make running it fail with "text file busy".
	if out, err := exec.Command("cp", self, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v: %s", self, bin, err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// flood runs processes as u that open n connections in all and hold them;
// it returns their reports once all are open, and a function that ends
// them (also called when the test ends).
func flood(t *testing.T, d *daemon, u *user.User, n int) ([]floodResult, func()) {
	t.Helper()
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// A process holds what its hard limit allows (the Go runtime raises
	// the soft limit to it); more processes for more.
	per := int(lim.Max) - 100
	if per < 100 {
		t.Skipf("the descriptor limit %d is too low to flood from", lim.Max)
	}
	per = min(per, 10000)
	bin := testBinary(t, d)
	var (
		results []floodResult
		stops   []func()
	)
	stopAll := func() {
		for _, stop := range stops {
			stop()
		}
	}
	t.Cleanup(stopAll)
	for left := n; left > 0; left -= per {
		k := min(left, per)
		cmd := exec.Command(bin)
		cmd.Env = []string{"VMSTATED_TEST_FLOOD=" + strconv.Itoa(k), "VMSTATED_TEST_SOCKET=" + d.socket, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stops = append(stops, func() {
			once.Do(func() {
				stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Errorf("flood process: %v: %s", err, stderr.String())
				}
			})
		})
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err != nil {
			t.Fatalf("flood process: %v", err)
		}
		var r floodResult
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("flood process said %q: %v", line, err)
		}
		if r.UID != int(uid) || r.Dialled != k {
			t.Fatalf("flood process: %+v, want uid %d and %d connections", r, uid, k)
		}
		results = append(results, r)
	}
	return results, stopAll
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("cannot count open descriptors:", err)
	}
	return len(ents)
}

// waitConns waits until the server's connection counts satisfy ok.
func waitConns(t *testing.T, d *daemon, what string, ok func(server.ConnStats) bool) server.ConnStats {
	t.Helper()
	end := time.Now().Add(guard)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := d.srv.Connections()
		if ok(st) {
			return st
		}
		if time.Now().After(end) {
			t.Fatalf("%s: connections %+v", what, st)
		}
		<-tick.C
	}
}

// TestConnectionFlood: one unprivileged user opens 20,000 connections and
// sends nothing. The daemon keeps only that user's share, refuses the rest
// with JSON errors, logs the refusals at a bounded rate, and root's
// status and every VM operation keep working. With the overall cap
// lowered below what the user could take, the reserve still lets root in.
func TestConnectionFlood(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a user and run clients as that user")
	}
	u := testUser(t)
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	for _, c := range []struct {
		name     string
		conns    int
		opts     server.Options
		held     int // the connections the user keeps; 0: the per-user cap
		status   int // the answer to the user's request on top
		wantPart string
	}{
		{"per user cap", 20000, server.Options{}, 0, 429, "the limit per user"},
		{"overall cap", 2000, server.Options{MaxConns: 300, ReservedConns: 100, MaxConnsPerUser: 5000}, 200, 503, "users other than root"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var refusalLines atomic.Int64
			opts := c.opts
			// The held connections stay for the whole test: what lets
			// root in is the cap, not a timeout.
			opts.ReadHeaderTimeout = guard
			opts.Logf = func(f string, a ...any) {
				msg := fmt.Sprintf(f, a...)
				if strings.Contains(msg, "refused a connection") {
					refusalLines.Add(1)
				}
				t.Log(msg)
			}
			d := startDaemon(t, map[string]string{"vm": sleeper("vm", "")}, opts)
			if c.held == 0 {
				c.held = d.srv.Connections().MaxConnsPerUser
			}
			fdsBefore := openFiles(t)
			begin := time.Now()
			reports, stop := flood(t, d, u, c.conns)
			for _, r := range reports {
				if r.Status != c.status || r.Code != api.CodeTooManyConnections || !strings.Contains(r.Error, c.wantPart) {
					t.Errorf("the flooding user's own request: %+v, want %d %s", r, c.status, api.CodeTooManyConnections)
				}
			}
			st := waitConns(t, d, "every connection accepted or refused", func(st server.ConnStats) bool {
				return st.ByUID[uint32(uid)]+int(st.Refused) >= c.conns
			})
			t.Logf("%d connections dialled in %v: the server holds %d of them, refused %d",
				c.conns, time.Since(begin).Round(time.Millisecond), st.ByUID[uint32(uid)], st.Refused)
			if st.ByUID[uint32(uid)] != c.held {
				t.Fatalf("the server holds %d connections of uid %d, want %d", st.ByUID[uint32(uid)], uid, c.held)
			}
			// The daemon's descriptors grew by what it holds, plus at
			// most the refused connections waiting for their request (64)
			// and some slack for the VMs' and the test's own.
			if fds := openFiles(t); fds > fdsBefore+c.held+64+32 {
				t.Fatalf("the daemon has %d descriptors open, %d before the flood; it holds %d connections", fds, fdsBefore, c.held)
			} else {
				t.Logf("the daemon has %d descriptors open, %d before the flood", fds, fdsBefore)
			}

			// Root is answered, within the header timeout at worst.
			ctx, cancel := context.WithTimeout(context.Background(), server.DefaultReadHeaderTimeout)
			t0 := time.Now()
			list, err := d.client.List(ctx)
			cancel()
			if err != nil {
				t.Fatalf("root's status during the flood: %v", err)
			}
			t.Logf("root's status answered in %v during the flood", time.Since(t0).Round(time.Microsecond))
			if len(list) != 1 || list[0].Name != "vm" {
				t.Fatalf("root's status: %+v", list)
			}

			// Every VM operation works.
			first := d.run("vm")
			if _, err := d.client.Do(context.Background(), "vm", api.ActionRestart, nil); err != nil {
				t.Fatalf("restart: %v", err)
			}
			if again := d.waitState("vm", api.StateRunning); again.PID == first.PID {
				t.Fatalf("restart kept pid %d", first.PID)
			}
			if _, err := d.client.Stop(context.Background(), "vm", api.StopOptions{}); err != nil {
				t.Fatalf("stop: %v", err)
			}
			d.waitState("vm", api.StateStopped)

			elapsed := time.Since(begin)
			if n, most := refusalLines.Load(), 2+int64(elapsed/(10*time.Second)); n > most {
				t.Fatalf("%d log lines about refusals in %v; at most %d expected", n, elapsed, most)
			}
			if st := d.srv.Connections(); st.Refused < uint64(c.conns-c.held) {
				t.Fatalf("refused %d, want at least %d", st.Refused, c.conns-c.held)
			}
			// Once the user lets go, its share is free again.
			stop()
			waitConns(t, d, "the user's connections released", func(st server.ConnStats) bool { return st.ByUID[uint32(uid)] == 0 })
		})
	}
}
