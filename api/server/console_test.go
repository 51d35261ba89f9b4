package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// rawGet sends a GET with the given extra header lines over the socket
// and returns the status and the JSON error body.
func rawUpgrade(t *testing.T, socket, path, headers string) (int, api.ErrorBody, http.Header) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(guard))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: vmstated\r\n%s\r\n", path, headers)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: status %d without a JSON error body: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, body, resp.Header
}

// Every way to ask for a console wrongly gets a JSON error that says what
// to do, before anything is upgraded.
func TestConsoleErrors(t *testing.T) {
	d := startDaemon(t, map[string]string{
		"idle": sleeper("idle", ""),
		"busy": sleeper("busy", ""),
	}, server.Options{})
	d.run("busy")
	const upgrade = "Connection: Upgrade\r\nUpgrade: " + api.ConsoleProtocol + "\r\n"
	tests := []struct {
		name, path, headers string
		status              int
		code, says          string
	}{
		{"no upgrade", "/v1/vms/busy/console", "", http.StatusUpgradeRequired, api.CodeBadRequest, "Upgrade: " + api.ConsoleProtocol},
		{"other protocol", "/v1/vms/busy/console", "Connection: Upgrade\r\nUpgrade: websocket\r\n", http.StatusUpgradeRequired, api.CodeBadRequest, "vmstatedctl console busy"},
		{"bad lines", "/v1/vms/busy/console?lines=-3", upgrade, http.StatusBadRequest, api.CodeBadRequest, "lines"},
		{"bad mode", "/v1/vms/busy/console?mode=rw2", upgrade, http.StatusBadRequest, api.CodeBadRequest, "rw, ro or force"},
		{"unknown query", "/v1/vms/busy/console?tail=1", upgrade, http.StatusBadRequest, api.CodeBadRequest, "unknown query parameter"},
		{"unknown VM", "/v1/vms/nope/console", upgrade, http.StatusNotFound, api.CodeNotFound, "no VM named"},
		{"stopped VM", "/v1/vms/idle/console", upgrade, http.StatusConflict, api.CodeNotAllowed, "start -c idle"},
		{"no console", "/v1/vms/busy/console?mode=ro", upgrade, http.StatusNotImplemented, api.CodeNotSupported, "console"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := rawUpgrade(t, d.socket, tc.path, tc.headers)
			if status != tc.status || body.Code != tc.code || !strings.Contains(body.Error, tc.says) {
				t.Errorf("status %d %+v, want %d %s saying %q", status, body, tc.status, tc.code, tc.says)
			}
			if status == http.StatusUpgradeRequired && hdr.Get("Upgrade") != api.ConsoleProtocol {
				t.Errorf("426 without Upgrade: %s", api.ConsoleProtocol)
			}
		})
	}
	// The client maps them as for every other call.
	if _, err := d.client.Console(context.Background(), "idle", api.ConsoleOptions{}); apiError(t, err, http.StatusConflict, api.CodeNotAllowed) == nil {
		t.Error("no error for a stopped VM")
	}
}
