package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/metrics"
	"github.com/vmstated/vmstated/supervisor"
)

// metricsDaemon is a supervisor with metrics behind a server on a socket.
func metricsDaemon(t *testing.T, withMetrics bool) (socket string, c *api.Client) {
	t.Helper()
	root := t.TempDir()
	writeConfig(t, root, "m1", sleeper("m1", ""))
	dir, err := os.MkdirTemp("", "vmmet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	sup := supervisor.New(ctx, supervisor.Options{
		RunDir: filepath.Join(state, "run"), LogDir: filepath.Join(state, "log"), StateDir: filepath.Join(state, "state"),
		Drivers: map[string]hypervisor.Driver{"exec": exec.New()}, Logf: t.Logf,
	})
	opts := server.Options{Logf: t.Logf}
	if withMetrics {
		opts.Metrics = metrics.New(ctx, sup)
	}
	sup.Load(config.LoadRoot(root, config.LoadOptions{}), supervisor.LoadOptions{})
	srv := server.New(sup, opts)
	socket = filepath.Join(dir, "s.sock")
	l, err := server.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	c = api.NewClient(socket)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), guard)
		defer scancel()
		sup.Stop(sctx, "m1", supervisor.StopOptions{Force: true})
		c.Close()
		cancel()
		<-served
		sup.Wait()
	})
	return socket, c
}

func rawGet(t *testing.T, socket, method, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(method, "http://vmstated"+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// GET /metrics answers the text format; other methods get the API's JSON
// error; the request counter sees every answer, and the event stream still
// streams through the counting writer.
func TestMetricsEndpoint(t *testing.T) {
	socket, c := metricsDaemon(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := c.Events(ctx, api.EventOptions{VM: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Start(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if ev, err := s.Next(); err != nil || ev.To != api.StateStartNetwork {
		t.Fatalf("first event through the counting writer: %+v, %v", ev, err)
	}
	code, body := rawGet(t, socket, http.MethodPost, "/metrics")
	var eb api.ErrorBody
	if code != http.StatusMethodNotAllowed || json.Unmarshal([]byte(body), &eb) != nil || eb.Code != api.CodeMethodNotAllowed {
		t.Errorf("POST /metrics: %d %s", code, body)
	}
	code, body = rawGet(t, socket, http.MethodGet, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	for _, want := range []string{"vmstated_up 1\n", `vmstated_vm_state{state="`, `vm="m1"`, `vmstated_api_requests_total{code="405"} 1` + "\n", `vmstated_api_requests_total{code="200"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestMetricsEndpointWithoutMetrics(t *testing.T) {
	socket, _ := metricsDaemon(t, false)
	code, body := rawGet(t, socket, http.MethodGet, "/metrics")
	var eb api.ErrorBody
	if code != http.StatusNotImplemented || json.Unmarshal([]byte(body), &eb) != nil || eb.Code != api.CodeNotSupported {
		t.Errorf("GET /metrics without metrics: %d %s", code, body)
	}
}
