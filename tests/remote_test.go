//go:build linux

package tests

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
)

// sshServer is an sshd of the test's own on a loopback port, with its own
// host key, and a client config that trusts only that key.
type sshServer struct {
	t      *testing.T
	dir    string
	port   int
	config string // client config (ssh -F)
	key    string // the user key every test user authorises
}

// privsepDir is sshd's privilege separation directory, which it refuses
// to run without: made by the first test that needs it (when missing) and
// removed after the last.
var privsepDir = &sharedDir{path: "/run/sshd"}

type sharedDir struct {
	path  string
	mu    sync.Mutex
	users int
	made  bool
}

func (d *sharedDir) hold(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users == 0 {
		if _, err := os.Stat(d.path); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(d.path, 0o755); err != nil {
				t.Fatal(err)
			}
			d.made = true
		}
	}
	d.users++
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.users--; d.users == 0 && d.made {
			os.Remove(d.path)
			d.made = false
		}
	})
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("an sshd of the test's own needs root")
	}
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("no sshd (Debian: apt-get install openssh-server)")
	}
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	dir, err := os.MkdirTemp("", "sshd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	privsepDir.hold(t)
	s := &sshServer{t: t, dir: dir, key: filepath.Join(dir, "id_user")}
	for _, k := range []string{filepath.Join(dir, "host_key"), s.key} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmstated-test", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "sshd_config")
	writeText(t, conf, fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s/host_key
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys.%%u
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
LogLevel VERBOSE
`, s.port, dir, dir, dir), 0o644)
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	writeText(t, filepath.Join(dir, "known_hosts"), fmt.Sprintf("[127.0.0.1]:%d %s", s.port, hostPub), 0o644)
	s.config = filepath.Join(dir, "ssh_config")
	writeText(t, s.config, fmt.Sprintf(`Host *
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
`, s.key, dir), 0o644)

	cmd := exec.Command(sshd, "-D", "-e", "-f", conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	log := &lockedBuffer{}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if !once && strings.Contains(sc.Text(), "Server listening on") {
				once = true
				close(ready)
			}
		}
	}()
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(guard):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", log)
		}
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("sshd exited:\n%s", log)
	case <-time.After(guard):
		t.Fatalf("sshd did not start listening:\n%s", log)
	}
	return s
}

// authorize lets user log in with the test's key.
func (s *sshServer) authorize(user string) {
	s.t.Helper()
	pub, err := os.ReadFile(s.key + ".pub")
	if err != nil {
		s.t.Fatal(err)
	}
	writeText(s.t, filepath.Join(s.dir, "authorized_keys."+user), string(pub), 0o644)
}

// host is the -H address of user's daemon at socket.
func (s *sshServer) host(user, socket string) string {
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", user, s.port, socket)
}

func writeText(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

// addUser creates a user for the test and removes it after. Its password
// is "*" (none can match) rather than useradd's "!", which sshd takes for
// a locked account.
func addUser(t *testing.T) *user.User {
	t.Helper()
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("no useradd")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "vmr" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "-M", "-p", "*", "-d", "/", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// remoteEnv is what the remote tests share: a daemon whose socket and
// vmstatedctl any user can reach, and the sshd in front of it.
type remoteEnv struct {
	*env
	ssh    *sshServer
	d      *daemonProc
	ctlPub string // vmstatedctl, readable by every user
}

func newRemoteEnv(t *testing.T) *remoteEnv {
	s := startSSHD(t)
	e := newEnv(t)
	ctl := e.public()
	return &remoteEnv{env: e, ssh: s, ctlPub: ctl}
}

// remoteCmd is vmstatedctl with -H for user, going through the test's ssh
// config to its sshd.
func (r *remoteEnv) remoteCmd(ctx context.Context, host string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, ctlBin, append([]string{"-H", host}, args...)...)
	cmd.Env = append(append([]string(nil), r.environ...),
		"VMSTATED_SSH_COMMAND=ssh -F "+r.ssh.config,
		"VMSTATED_REMOTE_VMSTATEDCTL="+r.ctlPub)
	return cmd
}

func (r *remoteEnv) remote(host string, args ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := r.remoteCmd(c, host, args...)
	var o, se strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		r.t.Fatalf("vmstatedctl -H %s %v: %v", host, args, err)
	}
	return o.String(), se.String(), code
}

// follow runs a streaming vmstatedctl -H command and returns its lines as
// they come; stop ends it with SIGINT and returns its exit status.
func (r *remoteEnv) follow(host string, args ...string) (lines <-chan string, stop func() int) {
	r.t.Helper()
	cmd := r.remoteCmd(context.Background(), host, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	var se lockedBuffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	ch := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	var code = -1
	stopped := false
	stop = func() int {
		if stopped {
			return code
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() {
			err := cmd.Wait()
			code = 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(guard):
			cmd.Process.Kill()
			<-done
		}
		if code != 0 {
			r.t.Logf("vmstatedctl -H %s %v: stderr: %s", host, args, se.String())
		}
		return code
	}
	r.t.Cleanup(func() { stop() })
	return ch, stop
}

// waitLine waits for a line containing want.
func waitLine(t *testing.T, lines <-chan string, what, want string) string {
	t.Helper()
	timeout := time.After(guard)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: the stream ended before a line with %q", what, want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("%s: no line with %q", what, want)
		}
	}
}

// waitStreaming returns once lines, a remote events stream of r's daemon
// (with host before each line when host is set), carries vm's events: it
// gives vm (config body) a new description and reloads until the stream
// shows the change, so that nothing done after it can happen before the
// stream is there. The VM must be at rest, so that the config applies now.
func (r *remoteEnv) waitStreaming(t *testing.T, lines <-chan string, host, vm, body string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for i := 0; time.Now().Before(deadline); i++ {
		r.writeConfig(vm, body+fmt.Sprintf("    description = \"stream probe %d\";\n", i))
		if _, err := r.d.c.Reload(ctx(t)); err != nil {
			t.Fatalf("reload: %v", err)
		}
		next := time.After(time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the events stream over ssh ended before it showed %s's config change", vm)
				}
				if strings.HasPrefix(l, host) && strings.Contains(l, vm+": config") {
					return
				}
			case <-next:
				break read
			}
		}
	}
	t.Fatalf("the events stream over ssh did not show %s's config change", vm)
}

// vmstatedctl -H drives a real daemon through a real sshd: status,
// start -w, events and log -f, as root.
func TestRemoteControl(t *testing.T) {
	t.Parallel()
	r := newRemoteEnv(t)
	r.ssh.authorize("root")
	vm := r.addVM("rem", sleeper(""))
	r.d = r.start()
	host := r.ssh.host("root", r.socket)

	out, errOut, code := r.remote(host, "-o", "json", "status")
	var list []api.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != vm {
		t.Fatalf("status over ssh: exit %d: %s%s", code, out, errOut)
	}

	events, stopEvents := r.follow(host, "events", vm)
	r.waitStreaming(t, events, "", vm, sleeper(""))
	if out, errOut, code := r.remote(host, "start", "-w", vm); code != 0 {
		t.Fatalf("start -w over ssh: exit %d: %s%s", code, out, errOut)
	}
	if st := r.d.get(vm); st.State != api.StateRunning || !alive(st.PID) {
		t.Fatalf("after start -w over ssh: %+v", st)
	}
	waitLine(t, events, "events over ssh", "running")

	logLines, stopLog := r.follow(host, "log", "-f", vm)
	if _, errOut, code := r.remote(host, "stop", "-w", vm); code != 0 {
		t.Fatalf("stop -w over ssh: exit %d: %s", code, errOut)
	}
	waitLine(t, events, "events over ssh", "stopped")
	if out, errOut, code := r.remote(host, "wait", "-t", "60", vm, "stopped"); code != 0 {
		t.Errorf("wait over ssh: exit %d: %s%s", code, out, errOut)
	}
	// The stop reaches the VM's log, which log -f follows.
	waitLine(t, logLines, "log -f over ssh", "stop")
	if code := stopEvents(); code != 0 {
		t.Errorf("events over ssh ended with exit %d after ^C", code)
	}
	if code := stopLog(); code != 0 {
		t.Errorf("log -f over ssh ended with exit %d after ^C", code)
	}

	// Several hosts: a HOST column, one row per host's VM.
	out, errOut, code = r.remote(host, "-H", host, "status")
	if code != 0 || strings.Count(out, host) != 2 || !strings.HasPrefix(out, "HOST") {
		t.Errorf("status with two -H: exit %d:\n%s%s", code, out, errOut)
	}
	if _, errOut, code := r.remote(host, "-H", host, "start", vm); code != 2 || !strings.Contains(errOut, "several hosts") {
		t.Errorf("start with two -H: exit %d %q; want a usage error", code, errOut)
	}
}

// Over ssh the daemon sees the ssh user, so a user who is not root sees
// and controls only the VMs they own.
func TestRemoteOwnerRules(t *testing.T) {
	t.Parallel()
	r := newRemoteEnv(t)
	u := addUser(t)
	r.ssh.authorize(u.Username)
	mine := r.addVM("rmine", sleeper("    owner = "+u.Username+";\n"))
	other := r.addVM("rother", sleeper(""))
	r.d = r.start()
	host := r.ssh.host(u.Username, r.socket)

	out, errOut, code := r.remote(host, "-o", "json", "status")
	var list []api.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("status as %s over ssh: exit %d: %s%s", u.Username, code, out, errOut)
	}
	if len(list) != 1 || list[0].Name != mine {
		t.Errorf("%s sees %+v over ssh, want only %s", u.Username, list, mine)
	}
	if _, errOut, code := r.remote(host, "start", other); code != 1 {
		t.Errorf("%s starting %s over ssh: exit %d %q; want it refused", u.Username, other, code, errOut)
	}
	if st := r.d.get(other); st.State != api.StateStopped {
		t.Errorf("%s is %s after a refused remote start", other, st.State)
	}
	if out, errOut, code := r.remote(host, "start", "-w", mine); code != 0 {
		t.Fatalf("%s starting own %s over ssh: exit %d: %s%s", u.Username, mine, code, out, errOut)
	}
	st := r.d.get(mine)
	if out, errOut, code := r.remote(host, "stop", "-w", mine); code != 0 {
		t.Fatalf("%s stopping own %s over ssh: exit %d: %s%s", u.Username, mine, code, out, errOut)
	}
	waitGone(t, st.PID)
}

// Each way a remote command can fail says which part failed, with its own
// exit status.
func TestRemoteFailures(t *testing.T) {
	t.Parallel()
	r := newRemoteEnv(t)
	r.ssh.authorize("root")
	r.addVM("rfail", sleeper(""))
	r.d = r.start()

	// A daemon that is gone: its socket is still there, nobody listens.
	dead := filepath.Join(filepath.Dir(r.socket), "dead.sock")
	l, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	tests := []struct {
		name     string
		host     string
		env      []string
		code     int
		contains []string
	}{
		{"dead daemon", r.ssh.host("root", dead), nil, 3, []string{"vmstated on ssh://", "cannot be reached", "connection refused"}},
		{"wrong socket path", r.ssh.host("root", "/nonexistent/vmstated.sock"), nil, 3, []string{"cannot be reached", "no such file"}},
		{"key refused", r.ssh.host("nobody", r.socket), nil, 4, []string{"ssh to ssh://nobody@", "Permission denied"}},
		{"no remote vmstatedctl", r.ssh.host("root", r.socket), []string{"VMSTATED_REMOTE_VMSTATEDCTL=/nonexistent/vmstatedctl"}, 5, []string{"vmstatedctl on ssh://", "No such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			cmd := r.remoteCmd(c, tt.host, "status")
			cmd.Env = append(cmd.Env, tt.env...)
			var se strings.Builder
			cmd.Stderr = &se
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, se.String())
			}
			for _, w := range tt.contains {
				if !strings.Contains(se.String(), w) {
					t.Errorf("stderr %q lacks %q", se.String(), w)
				}
			}
			if n := strings.Count(strings.TrimSpace(se.String()), "\n"); n != 0 {
				t.Errorf("the error takes %d lines, want one: %s", n+1, se.String())
			}
		})
	}
	// A working remote still works next to a failing one: status with
	// both shows the good host's VMs and fails naming the bad one.
	good, bad := r.ssh.host("root", r.socket), r.ssh.host("root", dead)
	out, errOut, code := r.remote(good, "-H", bad, "status")
	if code != 3 || !strings.Contains(out, good) || !strings.Contains(errOut, bad) {
		t.Errorf("status with a good and a dead host: exit %d:\n%s%s", code, out, errOut)
	}
}

// Several -H: status shows a HOST column (a "host" field in JSON), events
// follow every host at once with the host before each line, and stop -a
// stops the VMs of each host in turn.
func TestRemoteSeveralHosts(t *testing.T) {
	t.Parallel()
	r1, r2 := newRemoteEnv(t), newRemoteEnv(t)
	// r1's ssh config reaches both: it trusts r2's host key, and r2 takes
	// r1's user key.
	known, err := os.ReadFile(filepath.Join(r2.ssh.dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(r1.ssh.dir, "known_hosts"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(known)
	f.Close()
	r2.ssh.key = r1.ssh.key
	var hosts []string
	var vms []string
	for i, r := range []*remoteEnv{r1, r2} {
		r.ssh.authorize("root")
		vms = append(vms, r.addVM(fmt.Sprintf("multi%d", i), sleeper("")))
		r.d = r.start()
		r.d.do(vms[i], api.ActionStart)
		r.d.waitUp(vms[i])
		hosts = append(hosts, r.ssh.host("root", r.socket))
	}
	two := []string{"-H", hosts[1]}

	out, errOut, code := r1.remote(hosts[0], append(two, "-o", "json", "status")...)
	var rows []struct {
		Host  string    `json:"host"`
		Name  string    `json:"name"`
		State api.State `json:"state"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
		t.Fatalf("status -o json with two hosts: exit %d: %s\nstderr: %s", code, out, errOut)
	}
	for i, row := range rows {
		if row.Host != hosts[i] || row.Name != vms[i] || row.State != api.StateRunning {
			t.Errorf("row %d: %+v, want %s on %s, running", i, row, vms[i], hosts[i])
		}
	}

	// A probe VM on each host, at rest, shows when its host's stream is
	// there; the stops below come after both.
	var probes []string
	for i, r := range []*remoteEnv{r1, r2} {
		probes = append(probes, r.addVM(fmt.Sprintf("mprobe%d", i), sleeper("")))
		if _, err := r.d.c.Reload(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	events, stopEvents := r1.follow(hosts[0], append(two, "events")...)
	for i, r := range []*remoteEnv{r1, r2} {
		r.waitStreaming(t, events, hosts[i]+" ", probes[i], sleeper(""))
	}
	out, errOut, code = r1.remote(hosts[0], append(two, "stop", "-a")...)
	if code != 0 {
		t.Fatalf("stop -a with two hosts: exit %d: %s%s", code, out, errOut)
	}
	for i, r := range []*remoteEnv{r1, r2} {
		if st := r.d.get(vms[i]); st.State != api.StateStopped {
			t.Errorf("%s after stop -a on both hosts: %s", vms[i], st.State)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		l := waitLine(t, events, "events of two hosts", "stopped")
		for i, h := range hosts {
			if strings.HasPrefix(l, h+" ") && strings.Contains(l, vms[i]) {
				seen[h] = true
			}
		}
	}
	if code := stopEvents(); code != 0 {
		t.Errorf("events with two hosts ended with exit %d", code)
	}
}

// vmstatedctl -H ... console: what is typed reaches the VM's terminal
// through ssh and what it prints comes back; the end of input detaches a
// writer; a read-only watcher beside it, over its own ssh, sees the same
// output and is ended by the VM's stop, saying so.
func TestRemoteConsole(t *testing.T) {
	t.Parallel()
	r := newRemoteEnv(t)
	r.ssh.authorize("root")
	// An interactive shell ignores SIGTERM; SIGHUP ends it.
	vm := r.addVM("rcons", execVM([]string{"/bin/sh"}, "stop_signal = HUP; console = pty;"))
	r.d = r.start()
	r.d.do(vm, api.ActionStart)
	r.d.waitUp(vm)
	host := r.ssh.host("root", r.socket)

	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	watcher := r.remoteCmd(c, host, "console", "-r", "-n", "0", vm)
	var wout lockedBuffer
	watcher.Stdout, watcher.Stderr = &wout, &wout
	if err := watcher.Start(); err != nil {
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() { watched <- watcher.Wait() }()
	waitUntil(t, "the watcher to attach over ssh", func() bool { return strings.Contains(wout.String(), "Connected") })

	writer := r.remoteCmd(c, host, "console", "-n", "0", vm)
	in, err := writer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut lockedBuffer
	writer.Stdout, writer.Stderr = &out, &errOut
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the writer to attach over ssh", func() bool { return strings.Contains(errOut.String(), "Connected") })
	// The terminal echoes the line as typed; only the shell's answer has
	// the product.
	if _, err := io.WriteString(in, "echo remote-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the shell's answer over ssh", func() bool { return strings.Contains(out.String(), "remote-42") })
	waitUntil(t, "the watcher to see the answer", func() bool { return strings.Contains(wout.String(), "remote-42") })
	in.Close()
	if err := writer.Wait(); err != nil {
		t.Errorf("console over ssh after the end of input: %v: %s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "[detached]") {
		t.Errorf("the writer did not detach at the end of its input: %s", errOut.String())
	}
	if st := r.d.get(vm); st.State != api.StateRunning {
		t.Errorf("%s is %s after the console detached", vm, st.State)
	}

	if _, errOut, code := r.remote(host, "stop", "-w", vm); code != 0 {
		t.Fatalf("stop -w over ssh: exit %d: %s", code, errOut)
	}
	select {
	case err := <-watched:
		if err != nil {
			t.Errorf("the watcher ended with %v when the VM stopped: %s", err, wout.String())
		}
	case <-time.After(guard):
		t.Fatalf("the watcher over ssh did not end when the VM stopped: %s", wout.String())
	}
	if !strings.Contains(wout.String(), "has stopped") {
		t.Errorf("the watcher's end does not say the VM stopped: %s", wout.String())
	}
}
