package remote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary stands in for ssh: run with fakeSSHEnv set, it counts
// itself in a file and does what the remote vmstatedctl dial-stdio does,
// on the socket named by the last argument's "-s" word.
const fakeSSHEnv = "REMOTE_TEST_FAKE_SSH"

func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeSSHEnv); dir != "" {
		os.Exit(fakeSSH(dir))
	}
	os.Exit(m.Run())
}

func fakeSSH(dir string) int {
	f, err := os.OpenFile(filepath.Join(dir, "starts"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		f.WriteString("x")
		f.Close()
	}
	remote := os.Args[len(os.Args)-1]
	sock := strings.Trim(remote[strings.LastIndex(remote, " -s ")+4:], "'")
	if err := Splice(context.Background(), sock, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "no daemon answers at %s (%v)\n", sock, err)
		return ExitUnreachable
	}
	return 0
}

// A transport over the Dialer reuses one ssh process for requests one
// after another, starts a second only for a request that runs alongside a
// stream, and carries an HTTP upgrade (a raw byte stream both ways).
func TestDialerReuseAndUpgrade(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var hold atomic.Value
	release := make(chan struct{})
	hold.Store(release)
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeSSHEnv, dir)
	tg, _ := Parse("ssh://test-host" + sock)
	d := &Dialer{Target: tg, Getenv: func(k string) string {
		if k == EnvSSHCommand {
			return exe
		}
		return ""
	}}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx) }}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	starts := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "starts"))
		return len(b)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := hc.Get("http://vmstated" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := 0; i < 3; i++ {
		if got := get("/ping"); got != "pong" {
			t.Fatalf("ping: %q", got)
		}
	}
	if n := starts(); n != 1 {
		t.Errorf("3 requests one after another started ssh %d times, want 1", n)
	}
	// A stream holds its connection: the next request needs another.
	resp, err := hc.Get("http://vmstated/stream")
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "first\n" {
		t.Fatalf("stream: %q", line)
	}
	if got := get("/ping"); got != "pong" {
		t.Fatalf("ping beside a stream: %q", got)
	}
	if n := starts(); n != 2 {
		t.Errorf("a request beside a stream: ssh started %d times in all, want 2", n)
	}
	close(release)
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodGet, "http://vmstated/upgrade", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	// No client timeout: it would wrap the body in one that cannot write.
	resp, err = (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("upgraded body is a %T, not a stream both ways", resp.Body)
	}
	io.WriteString(rw, "hello\n")
	if line, _ := bufio.NewReader(rw).ReadString('\n'); line != "echo hello\n" {
		t.Errorf("through the upgrade: %q", line)
	}
	rw.Close()
}

// A daemon that does not answer is the remote daemon's failure, with what
// the remote side said.
func TestDialerDaemonDown(t *testing.T) {
	dir := t.TempDir()
	exe, _ := os.Executable()
	t.Setenv(fakeSSHEnv, dir)
	tg, _ := Parse("ssh://test-host" + filepath.Join(dir, "none.sock"))
	d := &Dialer{Target: tg, Getenv: func(k string) string {
		if k == EnvSSHCommand {
			return exe
		}
		return ""
	}}
	_, err := d.DialContext(context.Background())
	re, ok := err.(*Error)
	if !ok || re.Stage != StageDaemon || re.Status != ExitUnreachable || !strings.Contains(re.Detail, "no such file") {
		t.Fatalf("dial to a missing socket: %#v", err)
	}
	d.Getenv = func(string) string { return "/nonexistent/ssh" }
	_, err = d.DialContext(context.Background())
	if re, ok := err.(*Error); !ok || re.Stage != StageSSH {
		t.Fatalf("dial with no ssh binary: %#v", err)
	}
}
