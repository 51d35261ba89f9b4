package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/console"
)

// console attaches the caller to a VM's serial console: an HTTP upgrade
// to the frame protocol of package console (see api/README.md).
func (s *Server) console(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r, "lines", "mode") {
		return
	}
	q := r.URL.Query()
	lines := 0
	if v := q.Get("lines"); v == "all" {
		lines = -1
	} else if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("lines=%q: want a number of lines to replay, 0 or more, or all", v))
			return
		}
		lines = n
	}
	var mode console.Mode
	switch v := q.Get("mode"); v {
	case "", "rw":
		mode = console.ReadWrite
	case "ro":
		mode = console.ReadOnly
	case "force":
		mode = console.Force
	default:
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("mode=%q: want rw, ro or force", v))
		return
	}
	if !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), api.ConsoleProtocol) {
		w.Header().Set("Upgrade", api.ConsoleProtocol)
		s.fail(w, http.StatusUpgradeRequired, api.CodeBadRequest,
			fmt.Sprintf("%s is a console: send Connection: Upgrade and Upgrade: %s ('vmstatedctl console %s' does)", r.URL.Path, api.ConsoleProtocol, name))
		return
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	sess, err := s.sup.AttachConsole(r.Context(), name, mode, lines)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// The session was never served: it leaves when Serve is not run.
		s.fail(w, http.StatusInternalServerError, api.CodeInternal, "the connection cannot be taken over for the console: "+err.Error())
		return
	}
	defer conn.Close()
	// The request's deadlines are over; the session sets its own per
	// write, and a console may stay quiet for days.
	_ = conn.SetDeadline(time.Time{})
	_ = conn.SetWriteDeadline(time.Now().Add(s.writeTO))
	if _, err := fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.ConsoleProtocol); err != nil {
		sess.Close()
		return
	}
	_ = sess.Serve(conn, brw.Reader)
}

// headerHas reports whether a comma-separated header lists token.
func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
