package server

import (
	"context"
	"time"

	"github.com/vmstated/vmstated/api/peercred"
)

// WithPeer tags ctx as a connection of the peer cred, for tests that call
// the handler without a socket.
func WithPeer(ctx context.Context, cred peercred.Cred) context.Context {
	return context.WithValue(ctx, credKey{}, peer{cred: cred, known: true})
}

// SetProbeWait shortens how long Listen waits for a silent socket to go.
func SetProbeWait(d time.Duration) func() {
	old := probeWait
	probeWait = d
	return func() { probeWait = old }
}
