// Package server serves vmstated's control API (see package api for the
// endpoints and their shapes) from a supervisor, over a unix socket.
//
// Every connection is tagged with its peer's credentials as the kernel
// reports them; each request is authorized from those alone (see
// Authorization in package api's documentation). Slow or stuck clients
// cannot hold the daemon: headers must arrive within ReadHeaderTimeout,
// bodies within BodyTimeout, and every response write has a deadline. The
// two streams (events, log follow) last as long as their client reads, and
// end when it goes away or the server shuts down.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/api/peercred"
	"github.com/vmstated/vmstated/supervisor"
)

// Defaults for Options left zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultActionTimeout     = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	// shutdownGrace is how long Serve lets requests in progress finish
	// once its context ends.
	shutdownGrace = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	// Reload rescans the config directories (POST /v1/reload). Nil makes
	// that endpoint answer 501.
	Reload func(ctx context.Context) (supervisor.ReloadSummary, error)
	// AdminUID is the user, besides root, that may do everything: the
	// daemon's own. Nil means os.Geteuid().
	AdminUID *uint32
	// ReadHeaderTimeout bounds the arrival of a request's headers.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the arrival of a request's body.
	BodyTimeout time.Duration
	// WriteTimeout bounds each write of a response (for the streams: each
	// event or log chunk).
	WriteTimeout time.Duration
	// ActionTimeout bounds the work of one request on the supervisor
	// (an action, info, a screenshot, a reload).
	ActionTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// Logf receives the server's own problems (internal errors). Nil
	// discards them.
	Logf func(format string, args ...any)
}

// Server answers the control API from a supervisor.
type Server struct {
	sup      *supervisor.Supervisor
	reload   func(context.Context) (supervisor.ReloadSummary, error)
	adminUID uint32
	readHdr  time.Duration
	bodyTO   time.Duration
	writeTO  time.Duration
	actionTO time.Duration
	idleTO   time.Duration
	logf     func(string, ...any)
	ids      *idCache

	quit     chan struct{} // closed when streams are to end
	quitOnce sync.Once
}

// New returns a server of sup.
func New(sup *supervisor.Supervisor, opts Options) *Server {
	s := &Server{
		sup:      sup,
		reload:   opts.Reload,
		readHdr:  orDefault(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		bodyTO:   orDefault(opts.BodyTimeout, DefaultBodyTimeout),
		writeTO:  orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		actionTO: orDefault(opts.ActionTimeout, DefaultActionTimeout),
		idleTO:   orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		logf:     opts.Logf,
		ids:      newIDCache(idCacheTTL),
		quit:     make(chan struct{}),
	}
	if opts.AdminUID != nil {
		s.adminUID = *opts.AdminUID
	} else {
		s.adminUID = uint32(os.Geteuid())
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// credKey tags a connection's context with its peer's credentials.
type credKey struct{}

// peer is who sent a request.
type peer struct {
	cred  peercred.Cred
	known bool // false when the credentials could not be read
}

func peerOf(r *http.Request) peer {
	p, _ := r.Context().Value(credKey{}).(peer)
	return p
}

// ConnContext tags a new connection's context with its peer's credentials;
// it is the http.Server hook of the same name. A connection whose
// credentials cannot be read may see and do nothing.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peercred.Get(c)
	if err != nil {
		s.logf("control socket: %v; the connection gets no rights", err)
		return context.WithValue(ctx, credKey{}, peer{})
	}
	return context.WithValue(ctx, credKey{}, peer{cred: cred, known: true})
}

// HTTPServer returns an http.Server for the API with the timeouts set. Its
// connections must come from a unix socket listener.
func (s *Server) HTTPServer() *http.Server {
	logf := s.logf
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.readHdr,
		IdleTimeout:       s.idleTO,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       s.ConnContext,
		ErrorLog:          log.New(logWriter(logf), "control socket: ", 0),
	}
}

type logWriter func(string, ...any)

func (f logWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Serve answers requests on l until ctx ends; then it ends the streams,
// lets requests in progress finish for a few seconds, closes l and
// returns nil. Any other failure of the listener is returned.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := s.HTTPServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-s.quit:
		}
		s.Close()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	s.Close()
	<-done
	return fmt.Errorf("control socket: %w", err)
}

// Close ends the streams in progress (events, log follow); Serve then
// shuts down.
func (s *Server) Close() {
	s.quitOnce.Do(func() { close(s.quit) })
}
