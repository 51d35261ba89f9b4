package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/supervisor"
)

// FuzzHandler sends arbitrary methods, paths and bodies to the handler.
// The caller has no credentials (as when they cannot be read), so nothing
// can act; every answer must be well-formed and no input may panic.
func FuzzHandler(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/v1/vms", ""}, {"GET", "/v1/vms/vm", ""}, {"POST", "/v1/vms/vm/stop", `{"force":true}`},
		{"POST", "/v1/vms/vm/stop?timeout=1e400", ""}, {"GET", "/v1/vms/%2e%2e/log?lines=3", ""},
		{"POST", "/v1/reload", "{}"}, {"DELETE", "/v1/vms/vm", ""}, {"GET", "//v1//vms", ""},
		{"POST", "/v1/vms/vm/start", `{"x":`}, {"GET", "/v1/vms/vm/info/", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	root := f.TempDir()
	writeConfig(f, root, "vm", sleeper("vm", ""))
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	sup := supervisor.New(ctx, supervisor.Options{RunDir: f.TempDir(), LogDir: f.TempDir(), StateDir: f.TempDir()})
	sup.Load(config.LoadRoot(root, config.LoadOptions{}), supervisor.LoadOptions{})
	h := server.New(sup, server.Options{Logf: func(string, ...any) {}}).Handler()
	f.Fuzz(func(t *testing.T, method, target, body string) {
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(req.URL.Path, "/") {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Code == "" || eb.Error == "" {
				t.Fatalf("%s %s: %d with body %q", method, target, rec.Code, rec.Body.Bytes())
			}
			return
		}
		// Without credentials only the (empty) list succeeds.
		if got := bytes.TrimSpace(rec.Body.Bytes()); string(got) != "[]" {
			t.Fatalf("%s %s: anonymous caller got %d %q", method, target, rec.Code, got)
		}
	})
}
