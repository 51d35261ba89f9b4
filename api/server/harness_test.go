package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// guard bounds every wait of the tests; it only catches deadlocks.
const guard = 2 * time.Minute

// daemon is a real supervisor with the exec driver, served on a socket in
// a temporary directory.
type daemon struct {
	t      testing.TB
	root   string // config root
	dir    string // short temporary directory holding the socket
	socket string
	sup    *supervisor.Supervisor
	srv    *server.Server
	client *api.Client
	cancel context.CancelFunc
	served chan error
}

// sleeper is an exec VM whose process sleeps until told to stop.
func sleeper(name string, extra string) string {
	return fmt.Sprintf("%s {\n hypervisor = exec;\n stop_timeout = 20s;\n exec { command = [\"/bin/sleep\", \"100000\"]; }\n %s\n}\n", name, extra)
}

// startDaemon writes the configs (VM name -> config file text), loads them
// and serves the API.
func startDaemon(t testing.TB, vms map[string]string, opts server.Options) *daemon {
	t.Helper()
	root := t.TempDir()
	for name, text := range vms {
		writeConfig(t, root, name, text)
	}
	// Socket paths are limited to about 100 bytes: keep it short.
	dir, err := os.MkdirTemp("", "vmapi")
	if err != nil {
		t.Fatal(err)
	}
	// Other users (the authorization tests) must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	sup := supervisor.New(ctx, supervisor.Options{
		RunDir:   filepath.Join(state, "run"),
		LogDir:   filepath.Join(state, "log"),
		StateDir: filepath.Join(state, "state"),
		Drivers:  map[string]hypervisor.Driver{"exec": exec.New(), "qemu": qemu.New()},
		Logf:     t.Logf,
	})
	for _, d := range []string{"run", "log", "state"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := config.NewWatcher(root, config.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Initial().Err(); err != nil {
		t.Fatalf("test configs: %v", err)
	}
	sup.Load(w.Initial(), supervisor.LoadOptions{})
	go func() { _ = w.Run(ctx) }()
	go sup.Follow(w.Changes())
	if opts.Reload == nil {
		opts.Reload = func(ctx context.Context) (supervisor.ReloadSummary, error) {
			return sup.Reload(ctx, w.Request)
		}
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	srv := server.New(sup, opts)
	sock := filepath.Join(dir, "s.sock")
	l, err := server.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, root: root, dir: dir, socket: sock, sup: sup, srv: srv,
		client: api.NewClient(sock), cancel: cancel, served: make(chan error, 1)}
	go func() { d.served <- srv.Serve(ctx, l) }()
	t.Cleanup(d.stop)
	return d
}

func writeConfig(t testing.TB, root, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, name, "config"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stop kills every VM, then ends the server and the supervisor.
func (d *daemon) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	for _, st := range d.sup.List() {
		if st.State == statemachine.Stopped || st.State == statemachine.Failed {
			continue
		}
		if err := d.sup.Stop(ctx, st.Name, supervisor.StopOptions{Force: true}); err != nil && !errors.Is(err, statemachine.ErrNotAllowed) {
			d.t.Errorf("stopping %s: %v", st.Name, err)
			continue
		}
		d.settle(ctx, st.Name)
	}
	d.cancel()
	select {
	case err := <-d.served:
		if err != nil {
			d.t.Errorf("Serve: %v", err)
		}
	case <-ctx.Done():
		d.t.Errorf("Serve did not return after its context ended")
	}
	d.sup.Wait()
	d.client.Close()
}

// settle waits, on the supervisor itself, until a VM rests in stopped or
// failed.
func (d *daemon) settle(ctx context.Context, name string) {
	sub := d.sup.Bus().Subscribe(0)
	defer sub.Close()
	for {
		st, err := d.sup.Get(name)
		if err != nil || st.State == statemachine.Stopped || st.State == statemachine.Failed {
			return
		}
		select {
		case e, ok := <-sub.C():
			if !ok {
				sub = d.sup.Bus().Subscribe(0)
			}
			if e.VM == name && (e.To == statemachine.Stopped || e.To == statemachine.Failed) {
				return
			}
		case <-ctx.Done():
			d.t.Errorf("%s did not settle; it is %s", name, st.State)
			return
		}
	}
}

// waitState waits (through the real event stream) until the VM is in
// one of the states, and returns its status once that shows it.
func (d *daemon) waitState(name string, want ...statemachine.State) api.Status {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := d.client.Events(ctx, api.EventOptions{VM: name})
	if err != nil {
		d.t.Fatalf("events: %v", err)
	}
	defer func() { s.Close() }()
	is := func(st statemachine.State) bool {
		for _, w := range want {
			if st == w {
				return true
			}
		}
		return false
	}
	st, err := d.client.Get(ctx, name)
	if err != nil {
		d.t.Fatalf("get %s: %v", name, err)
	}
	for !is(st.State) {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			s.Close()
			if s, err = d.client.Events(ctx, api.EventOptions{VM: name, After: s.Last}); err == nil {
				continue
			}
		}
		if err != nil {
			d.t.Fatalf("waiting for %s to be %v (it is %s): %v", name, want, st.State, err)
		}
		if ev.Kind != api.KindTransition || !is(ev.To) {
			continue
		}
		// The status snapshot follows the event closely.
		for st.State != ev.To {
			if st, err = d.client.Get(ctx, name); err != nil {
				d.t.Fatalf("get %s: %v", name, err)
			}
			if st.State != ev.To {
				select {
				case <-time.After(5 * time.Millisecond):
				case <-ctx.Done():
					d.t.Fatalf("%s: event says %s, status stays %s", name, ev.To, st.State)
				}
			}
		}
	}
	return st
}

// run starts a VM and waits until it runs.
func (d *daemon) run(name string) api.Status {
	d.t.Helper()
	if _, err := d.client.Start(context.Background(), name); err != nil {
		d.t.Fatalf("start %s: %v", name, err)
	}
	st := d.waitState(name, statemachine.Running, statemachine.Failed)
	if st.State == statemachine.Failed {
		d.t.Fatalf("%s failed to start: %s", name, st.Reason)
	}
	return st
}

// apiError asserts err is an *api.Error with the status and code.
func apiError(t *testing.T, err error, status int, code string) *api.Error {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want an api error %d %s", err, err, status, code)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("err = %d %s %q, want %d %s", ae.Status, ae.Code, ae.Message, status, code)
	}
	return ae
}
