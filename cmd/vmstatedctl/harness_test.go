package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// guard bounds waits; it only catches deadlocks.
const guard = 2 * time.Minute

// testDaemon is a real supervisor (exec driver) served on a socket.
type testDaemon struct {
	root, socket string
	sup          *supervisor.Supervisor
}

func sleeper(name, extra string) string {
	return fmt.Sprintf("%s {\n hypervisor = exec;\n stop_timeout = 20s;\n exec { command = [\"/bin/sleep\", \"100000\"]; }\n %s\n}\n", name, extra)
}

func writeConfig(t *testing.T, root, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, name, "config"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startDaemon(t *testing.T, vms map[string]string) *testDaemon {
	t.Helper()
	root := t.TempDir()
	for name, text := range vms {
		writeConfig(t, root, name, text)
	}
	dir, err := os.MkdirTemp("", "vmctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	sup := supervisor.New(ctx, supervisor.Options{
		RunDir: filepath.Join(state, "run"), LogDir: filepath.Join(state, "log"),
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
	srv := server.New(sup, server.Options{Logf: t.Logf, Reload: func(ctx context.Context) (supervisor.ReloadSummary, error) {
		return sup.Reload(ctx, w.Request)
	}})
	sock := filepath.Join(dir, "s.sock")
	l, err := server.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	d := &testDaemon{root: root, socket: sock, sup: sup}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), guard)
		defer scancel()
		for _, st := range sup.List() {
			if st.State == statemachine.Stopped || st.State == statemachine.Failed {
				continue
			}
			if err := sup.Stop(sctx, st.Name, supervisor.StopOptions{Force: true}); err == nil || errors.Is(err, statemachine.ErrNotAllowed) {
				d.settle(sctx, st.Name)
			}
		}
		cancel()
		<-served
		sup.Wait()
	})
	return d
}

// settle waits until a VM rests in stopped or failed.
func (d *testDaemon) settle(ctx context.Context, name string) {
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
			return
		}
	}
}

// waitState waits until a VM is in state want.
func (d *testDaemon) waitState(t *testing.T, name string, want statemachine.State) {
	t.Helper()
	sub := d.sup.Bus().Subscribe(0)
	defer func() { sub.Close() }()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		if st, err := d.sup.Get(name); err == nil && st.State == want {
			return
		}
		select {
		case _, ok := <-sub.C():
			if !ok {
				sub = d.sup.Bus().Subscribe(0)
			}
		case <-timer.C:
			st, _ := d.sup.Get(name)
			t.Fatalf("%s did not reach %s; it is %s", name, want, st.State)
		}
	}
}

// ctl runs one command line in process against the daemon.
func (d *testDaemon) ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"-s", d.socket}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// syncBuffer is a buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput polls until the buffer holds want.
func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never showed %q:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
