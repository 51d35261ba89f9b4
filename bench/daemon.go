package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/api"
)

// daemon is one vmstated process the suite started, in the foreground
// (-f) so that it is our child and its start can be timed from exec.
type daemon struct {
	cmd    *exec.Cmd
	dir    string
	socket string
	client *api.Client
	events *watcher
	done   chan struct{} // closed when the process has been waited for
	err    error         // its exit, after done
}

// startDaemon runs vmstated on config root root with every other path
// under a fresh directory below the suite's temp dir. It returns once the
// control socket lists want VMs, with the time that took since exec.
func (s *Suite) startDaemon(ctx context.Context, tag, root string, want int) (*daemon, time.Duration, error) {
	dir, err := os.MkdirTemp(s.tmp, tag+"-")
	if err != nil {
		return nil, 0, err
	}
	return s.startDaemonIn(ctx, tag, dir, root, want)
}

// startDaemonIn is startDaemon with the state and log directories under
// dir, which may hold those of an earlier daemon (as on a host, where the
// daemon restarts with the records and logs of the VMs it ran before).
// The run directory is always new, as after a reboot.
func (s *Suite) startDaemonIn(ctx context.Context, tag, dir, root string, want int) (*daemon, time.Duration, error) {
	run, err := os.MkdirTemp(s.runTmp, tag+"-")
	if err != nil {
		return nil, 0, err
	}
	state, logs, xdg := filepath.Join(dir, "state"), filepath.Join(dir, "log"), filepath.Join(dir, "xdg")
	for _, d := range []string{run, state, logs, xdg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, 0, err
		}
	}
	d := &daemon{dir: dir, socket: filepath.Join(run, "vmstated.sock"), done: make(chan struct{})}
	errf, err := os.Create(filepath.Join(dir, "daemon.err"))
	if err != nil {
		return nil, 0, err
	}
	defer errf.Close()
	d.cmd = exec.Command(s.bin("vmstated"), "-f", "-c", root, "-p", filepath.Join(run, "vmstated.pid"),
		"-s", d.socket, "-l", logs, "-S", state, "-R", run)
	d.cmd.Env = append(cleanEnv(), "XDG_RUNTIME_DIR="+run, "XDG_STATE_HOME="+xdg, "XDG_CONFIG_HOME="+xdg)
	d.cmd.Stdout, d.cmd.Stderr = errf, errf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a ^C at the terminal is ours to handle
	t0 := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("starting vmstated: %w", err)
	}
	s.track(d)
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	d.client = api.NewClient(d.socket)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		vms, err := d.client.List(rctx)
		cancel()
		if err == nil && len(vms) >= want {
			ready := time.Since(t0)
			d.events, err = newWatcher(ctx, d.client)
			if err != nil {
				d.close(ctx)
				return nil, 0, err
			}
			return d, ready, nil
		}
		select {
		case <-d.done:
			return nil, 0, fmt.Errorf("vmstated exited during start-up (%v): %s", d.err, tail(filepath.Join(dir, "daemon.err")))
		case <-ctx.Done():
			d.close(context.Background())
			return nil, 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Since(t0) > 2*time.Minute {
			d.close(context.Background())
			return nil, 0, fmt.Errorf("vmstated did not list %d VMs within 2 minutes (last error: %v)", want, err)
		}
	}
}

// pid is the daemon's process id.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// close force-stops every VM still up, then ends the daemon.
func (d *daemon) close(ctx context.Context) {
	select {
	case <-d.done:
		return
	default:
	}
	if ctx.Err() == nil {
		_ = d.stopAll(ctx, 2*time.Minute)
	}
	if d.events != nil {
		d.events.close()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	d.client.Close()
}

// stopAll force-stops every VM that is not stopped or failed and waits
// until none is up.
func (d *daemon) stopAll(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	vms, err := d.client.List(ctx)
	if err != nil {
		return err
	}
	for _, v := range vms {
		if !idle(string(v.State)) {
			_, _ = d.client.Stop(ctx, v.Name, api.StopOptions{Force: true})
		}
	}
	for {
		vms, err := d.client.List(ctx)
		if err != nil {
			return err
		}
		up := 0
		for _, v := range vms {
			if !idle(string(v.State)) {
				up++
			}
		}
		if up == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d VMs still up: %w", up, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func idle(state string) bool { return state == "stopped" || state == "failed" }

// watcher reads the daemon's event stream and hands the receive time of
// awaited events to whoever registered for them.
type watcher struct {
	stream *api.EventStream
	cancel context.CancelFunc
	mu     sync.Mutex
	want   map[string]*waiter
	lost   bool
}

// waiter is one expect: its channel and the keys it is registered under.
type waiter struct {
	ch   chan hit
	keys []string
}

// hit is an awaited event: when it was read, the state entered (or
// "config") and the daemon's reason.
type hit struct {
	t      time.Time
	state  string
	reason string
}

func newWatcher(ctx context.Context, c *api.Client) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.Events(ctx, api.EventOptions{})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening the event stream: %w", err)
	}
	w := &watcher{stream: st, cancel: cancel, want: map[string]*waiter{}}
	go w.read()
	return w, nil
}

func (w *watcher) read() {
	for {
		e, err := w.stream.Next()
		now := time.Now()
		if err != nil {
			return
		}
		var state string
		switch e.Kind {
		case api.KindTransition:
			state = string(e.To)
		case api.KindConfig:
			state = "config"
		case api.KindLost:
			w.mu.Lock()
			w.lost = true
			w.mu.Unlock()
			continue
		default:
			continue
		}
		key := e.VM + "/" + state
		w.mu.Lock()
		if wt, ok := w.want[key]; ok {
			// One waiter may wait for several states: unregister all.
			for _, k := range wt.keys {
				delete(w.want, k)
			}
			wt.ch <- hit{t: now, state: state, reason: e.Reason}
		}
		w.mu.Unlock()
	}
}

// expect registers for the next event of vm entering one of states (or
// "config" for a config event); register before causing it.
func (w *watcher) expect(vm string, states ...string) <-chan hit {
	wt := &waiter{ch: make(chan hit, 1)}
	for _, st := range states {
		wt.keys = append(wt.keys, vm+"/"+st)
	}
	w.mu.Lock()
	for _, k := range wt.keys {
		w.want[k] = wt
	}
	w.mu.Unlock()
	return wt.ch
}

// hadLoss reports whether the daemon said events were dropped.
func (w *watcher) hadLoss() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

func (w *watcher) close() {
	w.cancel()
	_ = w.stream.Close()
}

// errTimeout: an awaited event did not come.
var errTimeout = errors.New("timed out")

// wait returns what ch delivered, or errTimeout.
func wait(ctx context.Context, ch <-chan hit, limit time.Duration, what string) (hit, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case h := <-ch:
		return h, nil
	case <-ctx.Done():
		return hit{}, ctx.Err()
	case <-t.C:
		return hit{}, fmt.Errorf("%s: %w after %v", what, errTimeout, limit)
	}
}

// waitState is wait for an action that ends in want; reaching "failed"
// instead is an error that carries the daemon's reason.
func waitState(ctx context.Context, ch <-chan hit, limit time.Duration, vm, want string) (time.Time, error) {
	h, err := wait(ctx, ch, limit, vm+" reaching "+want)
	if err != nil {
		return time.Time{}, err
	}
	if h.state != want {
		return h.t, fmt.Errorf("%s reached %s instead of %s: %s", vm, h.state, want, h.reason)
	}
	return h.t, nil
}

// cleanEnv is the environment for the processes the suite starts: ours
// without variables that would redirect vmstated or its clients.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "XDG_"), k == "NOTIFY_SOCKET", strings.HasPrefix(k, "VMSTATED"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tail returns the end of a file, for error messages.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 2000 {
		_, _ = f.Seek(-2000, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimSpace(string(b))
}
