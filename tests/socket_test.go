//go:build linux

package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
)

// The control socket of the real daemon: a body that never comes is
// answered 408 and cut off; a user at its connection cap (-C) is refused
// with the reason, while root's commands and the user's VM keep working,
// and the user gets back in once its connections close.
func TestSocketLimits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run vmstatedctl as another user")
	}
	const uid, gid = 65534, 65534 // nobody
	const userConns = 4
	e := newEnv(t)
	ctl := e.public()
	vm := e.addVM("limits", sleeper("    owner = 65534;\n"))
	d := e.start("-C", strconv.Itoa(userConns))

	// A body that never comes.
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	if _, err := io.WriteString(c, "POST /v1/vms/"+vm+"/start HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(guard))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a request whose body never came: %v", err)
	}
	var eb api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.StatusCode != 408 || eb.Code != api.CodeRequestTimeout {
		t.Fatalf("answer %d %+v (%v), want 408 %s", resp.StatusCode, eb, err, api.CodeRequestTimeout)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Fatalf("after the 408 the connection stays open (%v) or says more: %q", err, rest)
	}
	t.Logf("a body that never came was answered 408 after %v", time.Since(begin).Round(time.Millisecond))
	if st := d.get(vm); st.State != api.StateStopped {
		t.Fatalf("%s is %s after a request that never arrived", vm, st.State)
	}

	asNobody := func(args ...string) *exec.Cmd {
		cmd := exec.Command(ctl, append([]string{"-s", e.socket}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		return cmd
	}
	// The user takes its whole share with event streams. Each replays
	// the VM's start, which root asks for first: a line means it is in.
	if _, err := d.c.Start(ctx(t), vm); err != nil {
		t.Fatal(err)
	}
	d.waitUp(vm)
	subscribed := make(chan struct{}, userConns)
	var streams []*exec.Cmd
	for i := 0; i < userConns; i++ {
		cmd := asNobody("events", "-after", "0", vm)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, cmd)
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		go func() {
			sc := bufio.NewScanner(out)
			if sc.Scan() {
				subscribed <- struct{}{}
			}
			_, _ = io.Copy(io.Discard, out)
		}()
	}
	for i := 0; i < userConns; i++ {
		select {
		case <-subscribed:
		case <-time.After(guard):
			t.Fatalf("only %d of %d event streams are in", i, userConns)
		}
	}

	// One more connection of the user is refused, and says why.
	var stderr strings.Builder
	cmd := asNobody("status")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.HasPrefix(stderr.String(), fmt.Sprintf("vmstatedctl: uid %d holds %d connections", uid, userConns)) {
		t.Fatalf("status as nobody beyond its %d connections: %v: %q", userConns, err, stderr.String())
	}
	t.Logf("refused: %s", strings.TrimSpace(stderr.String()))

	// Root is not held up, nor is the VM.
	if out, err := exec.Command(ctlBin, "-s", e.socket, "status").CombinedOutput(); err != nil || !strings.Contains(string(out), vm) {
		t.Fatalf("root's status: %v: %s", err, out)
	}
	if out, err := exec.Command(ctlBin, "-s", e.socket, "stop", "-w", vm).CombinedOutput(); err != nil {
		t.Fatalf("root's stop -w: %v: %s", err, out)
	}
	if !strings.Contains(d.stderr.String(), "refused a connection of uid 65534") {
		t.Fatalf("the daemon did not log the refusal:\n%s", d.stderr.String())
	}

	// Once its streams end, the user gets in again.
	for _, cmd := range streams {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	waitUntil(t, "nobody's status once its streams ended", func() bool {
		return asNobody("status").Run() == nil
	})
}
