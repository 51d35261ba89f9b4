package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/api/server"
)

// Suspend, send and receive of a VM whose driver cannot save a guest, or
// that is in the wrong state, are refused with the status that says so,
// and change nothing.
func TestSuspendRefused(t *testing.T) {
	d := startDaemon(t, map[string]string{"vm": sleeper("vm", ""), "idle": sleeper("idle", "")}, server.Options{})
	c := d.client
	ctx := context.Background()
	d.run("vm")

	_, err := c.Suspend(ctx, "vm", api.SuspendOptions{})
	apiError(t, err, http.StatusNotImplemented, api.CodeNotSupported)
	_, err = c.Do(ctx, "vm", api.ActionDiscard, nil)
	apiError(t, err, http.StatusConflict, api.CodeNotAllowed)
	_, err = c.Saved(ctx, "vm")
	apiError(t, err, http.StatusConflict, api.CodeNotAllowed)
	_, err = c.Receive(ctx, "vm", strings.NewReader("anything"))
	apiError(t, err, http.StatusConflict, api.CodeNotAllowed)
	_, err = c.Receive(ctx, "idle", strings.NewReader("not a saved guest"))
	apiError(t, err, http.StatusNotImplemented, api.CodeNotSupported)
	_, err = c.Receive(ctx, "nosuch", strings.NewReader("x"))
	apiError(t, err, http.StatusNotFound, api.CodeNotFound)
	if st, _ := c.Get(ctx, "idle"); st.State != api.StateStopped || st.Saved != nil {
		t.Errorf("idle after the refused receive: %+v", st)
	}
	if st, _ := c.Get(ctx, "vm"); st.State != api.StateRunning {
		t.Errorf("vm after the refused suspend: %+v", st)
	}
}
