package server

import (
	"bufio"
	"errors"
	"net"
	"net/http"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/supervisor"
)

// MetricsPath is where the Prometheus text is served.
const MetricsPath = "/metrics"

// metrics serves GET /metrics: every VM for root and the daemon's user,
// else only the VMs the caller may act on (and none of the daemon's own
// series beyond up and build info).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.metricsSrc == nil {
		s.fail(w, http.StatusNotImplemented, api.CodeNotSupported, "this daemon serves no metrics")
		return
	}
	p := peerOf(r)
	visible := func(st supervisor.Status) bool { return s.mayAct(p, st) }
	s.metricsSrc.Handler(visible, s.isAdmin(p)).ServeHTTP(w, r)
}

// counting reports each answer's status to the metrics.
func (s *Server) counting(h http.Handler) http.Handler {
	if s.metricsSrc == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		code := cw.code
		if code == 0 {
			code = http.StatusOK
		}
		s.metricsSrc.ObserveRequest(code)
	})
}

// codeWriter notes the status written. It hands the connection on to
// handlers that take it over (an upgrade) and flushes streams.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's own writer
// (deadlines, flush, hijack).
func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *codeWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *codeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := c.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be taken over")
	}
	if c.code == 0 {
		c.code = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}
