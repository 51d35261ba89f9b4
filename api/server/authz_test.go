package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/supervisor"
)

// TestMain lets the test binary act as a client run under another user
// (see asUser and flood).
func TestMain(m *testing.M) {
	if os.Getenv("VMSTATED_TEST_CLIENT") == "1" {
		os.Exit(clientMain())
	}
	if os.Getenv("VMSTATED_TEST_FLOOD") != "" {
		os.Exit(floodMain())
	}
	os.Exit(m.Run())
}

// clientResult is what the client process reports.
type clientResult struct {
	UID     int               `json:"uid"`
	List    []string          `json:"list"`
	Results map[string]string `json:"results"` // op -> "ok" or the error code
	Events  []string          `json:"events"`  // VMs seen in the event stream
}

// clientMain performs the operations in VMSTATED_TEST_OPS (op:vm,...) on
// the socket in VMSTATED_TEST_SOCKET and prints a clientResult.
func clientMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c := api.NewClient(os.Getenv("VMSTATED_TEST_SOCKET"))
	res := clientResult{UID: os.Getuid(), Results: map[string]string{}}
	outcome := func(err error) string {
		var ae *api.Error
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &ae):
			return ae.Code
		}
		return err.Error()
	}
	list, err := c.List(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, st := range list {
		res.List = append(res.List, st.Name)
	}
	for _, op := range strings.Split(os.Getenv("VMSTATED_TEST_OPS"), ",") {
		verb, name, _ := strings.Cut(op, ":")
		var err error
		switch verb {
		case "get":
			_, err = c.Get(ctx, name)
		case "log":
			var rd io.ReadCloser
			if rd, err = c.Log(ctx, name, api.LogOptions{}); err == nil {
				rd.Close()
			}
		case "console":
			var rwc io.ReadWriteCloser
			if rwc, err = c.Console(ctx, name, api.ConsoleOptions{Mode: api.ConsoleReadOnly}); err == nil {
				rwc.Close()
			}
		case "reload":
			_, err = c.Reload(ctx)
		case "events":
			var s *api.EventStream
			if s, err = c.Events(ctx, api.EventOptions{VM: name}); err == nil {
				s.Close()
			}
		default:
			_, err = c.Do(ctx, name, api.Action(verb), nil)
		}
		res.Results[op] = outcome(err)
	}
	// Every event kept so far, up to the sentinel published before this
	// process was started.
	s, err := c.Events(ctx, api.EventOptions{Replay: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		e, err := s.Next()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if e.Reason == "sentinel" {
			break
		}
		if e.VM != "" {
			res.Events = append(res.Events, e.VM)
		}
	}
	s.Close()
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// asUser runs the client process with setpriv under uid/gid nobody,
// with the supplementary groups given (none when empty).
func asUser(t *testing.T, d *daemon, groups []string, ops ...string) clientResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory may be closed to others.
	bin := filepath.Join(d.dir, "client.test")
	if _, err := os.Stat(bin); err != nil {
		// Copied by cp(1), so the copy is never open for writing in this
		// process, where a concurrent fork could make running it fail
		// with "text file busy".
		if out, err := exec.Command("cp", self, bin).CombinedOutput(); err != nil {
			t.Fatalf("cp %s %s: %v: %s", self, bin, err, out)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--reuid=nobody", "--regid=nogroup"}
	if len(groups) == 0 {
		args = append(args, "--clear-groups")
	} else {
		args = append(args, "--groups="+strings.Join(groups, ","))
	}
	args = append(args, bin)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	cmd.Env = []string{"VMSTATED_TEST_CLIENT=1", "VMSTATED_TEST_SOCKET=" + d.socket,
		"VMSTATED_TEST_OPS=" + strings.Join(ops, ","), "PATH=/usr/bin:/bin"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s", err, stderr.String())
	}
	var res clientResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return res
}

// TestAuthorization runs clients as the user nobody, with and without a
// VM's group, and checks what each may see and do.
func TestAuthorization(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this host")
	}
	if _, err := user.LookupGroup("nogroup"); err != nil {
		t.Skip("no group nogroup on this host")
	}
	var team *user.Group
	for _, g := range []string{"users", "daemon", "adm", "staff"} {
		if gr, err := user.LookupGroup(g); err == nil {
			team = gr
			break
		}
	}
	if team == nil {
		t.Skip("no group to use as a VM's group")
	}
	d := startDaemon(t, map[string]string{
		"mine":  sleeper("mine", "owner = nobody;"),
		"byuid": sleeper("byuid", "owner = "+nobody.Uid+";"),
		"team":  sleeper("team", "group = "+team.Name+";"),
		"roots": sleeper("roots", "owner = root;"),
		"open":  sleeper("open", ""),
	}, server.Options{})
	// Some events for every VM.
	for _, n := range []string{"mine", "team", "roots", "open"} {
		d.run(n)
	}
	d.sup.Bus().Publish(supervisor.Event{Kind: supervisor.KindConfig, Reason: "sentinel"})

	t.Run("owner", func(t *testing.T) {
		r := asUser(t, d, nil,
			"get:mine", "get:byuid", "log:mine", "events:mine", "pause:mine", "unpause:mine",
			"get:team", "get:roots", "get:open", "stop:roots", "start:open", "log:roots", "events:roots", "get:nope", "reload",
			"console:mine", "console:roots")
		if r.UID == 0 {
			t.Fatal("the client ran as root")
		}
		if got := strings.Join(r.List, ","); got != "byuid,mine" {
			t.Fatalf("nobody lists %q, want byuid,mine", got)
		}
		want := map[string]string{
			"get:mine": "ok", "get:byuid": "ok", "log:mine": "ok", "events:mine": "ok", "pause:mine": "ok", "unpause:mine": "ok",
			"get:team": api.CodeForbidden, "get:roots": api.CodeForbidden, "get:open": api.CodeForbidden,
			"stop:roots": api.CodeForbidden, "start:open": api.CodeForbidden, "log:roots": api.CodeForbidden,
			"events:roots": api.CodeForbidden, "get:nope": api.CodeNotFound, "reload": api.CodeForbidden,
			// An exec VM without console = pty has none; the owner gets that far.
			"console:mine": api.CodeNotSupported, "console:roots": api.CodeForbidden,
		}
		for op, w := range want {
			if r.Results[op] != w {
				t.Errorf("%s as nobody: %s, want %s", op, r.Results[op], w)
			}
		}
		checkEvents(t, r.Events, "mine", "byuid")
	})
	t.Run("group member", func(t *testing.T) {
		r := asUser(t, d, []string{team.Gid}, "get:team", "stop:team", "get:roots")
		if got := strings.Join(r.List, ","); got != "byuid,mine,team" {
			t.Fatalf("nobody in %s lists %q, want byuid,mine,team", team.Name, got)
		}
		if r.Results["get:team"] != "ok" || r.Results["stop:team"] != "ok" || r.Results["get:roots"] != api.CodeForbidden {
			t.Errorf("as a member of %s: %v", team.Name, r.Results)
		}
		checkEvents(t, r.Events, "mine", "team", "byuid")
	})
	// Root sees everything, in process.
	list, err := d.client.List(context.Background())
	if err != nil || len(list) != 5 {
		t.Fatalf("root lists %d VMs (%v)", len(list), err)
	}
}

// checkEvents: the events seen are of the allowed VMs only, and include
// the first one's.
func checkEvents(t *testing.T, seen []string, allowed ...string) {
	t.Helper()
	vms := uniq(seen)
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	found := false
	for _, v := range vms {
		if !ok[v] {
			t.Errorf("saw events of %s; may see only %v", v, allowed)
		}
		found = found || v == allowed[0]
	}
	if !found {
		t.Errorf("saw no events of %s (saw %v)", allowed[0], vms)
	}
}

func uniq(s []string) []string {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	out := make([]string, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	sort.Strings(out)
	return out
}

// TestAdminUID: the daemon's own user, not only root, may do everything.
func TestAdminUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this host")
	}
	var uid uint32
	fmt.Sscan(nobody.Uid, &uid)
	d := startDaemon(t, map[string]string{"roots": sleeper("roots", "owner = root;")}, server.Options{AdminUID: &uid})
	d.sup.Bus().Publish(supervisor.Event{Kind: supervisor.KindConfig, Reason: "sentinel"})
	r := asUser(t, d, nil, "get:roots", "reload")
	if strings.Join(r.List, ",") != "roots" || r.Results["get:roots"] != "ok" || r.Results["reload"] != "ok" {
		t.Fatalf("the daemon's user got %+v", r)
	}

}
