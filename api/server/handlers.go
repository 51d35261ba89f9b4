package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/console"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// Handler returns the API's handler. Requests must carry peer credentials
// in their context (ConnContext); those that do not may do nothing.
func (s *Server) Handler() http.Handler {
	return s.counting(http.HandlerFunc(s.route))
}

// route dispatches by path and method. It is written out by hand so that
// every answer, 404 and 405 included, is a JSON error body.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(*conn); ok {
		c.own.Store(false) // the answers are the handler's from here
	}
	// Until the handler sets a closer one, no write may take longer than
	// the whole request could.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.actionTO + s.writeTO))
	if seg, ok := segments(r.URL); ok && len(seg) == 4 && seg[0] == "v1" && seg[1] == "vms" && seg[3] == "receive" && r.Method == http.MethodPost {
		// A saved guest: streamed to the state directory, never held
		// in memory.
		s.receive(w, r, seg[2])
		return
	}
	if !s.takeBody(w, r) {
		return
	}

	if r.URL.Path == MetricsPath {
		s.method(w, r, http.MethodGet, s.metrics)
		return
	}
	seg, ok := segments(r.URL)
	if !ok || len(seg) < 2 || seg[0] != "v1" {
		s.fail(w, http.StatusNotFound, api.CodeNoEndpoint, noEndpoint(r))
		return
	}
	switch {
	case len(seg) == 2 && seg[1] == "vms":
		s.method(w, r, http.MethodGet, s.list)
	case len(seg) == 3 && seg[1] == "vms":
		s.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.get(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && seg[3] == "info":
		s.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.info(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && seg[3] == "console":
		s.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.console(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && seg[3] == "saved":
		s.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.saved(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && seg[3] == "receive":
		s.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { s.receive(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && seg[3] == "log":
		s.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.log(w, r, seg[2]) })
	case len(seg) == 4 && seg[1] == "vms" && api.Action(seg[3]).Valid():
		a := api.Action(seg[3])
		s.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { s.action(w, r, seg[2], a) })
	case len(seg) == 2 && seg[1] == "events":
		s.method(w, r, http.MethodGet, s.events)
	case len(seg) == 2 && seg[1] == "reload":
		s.method(w, r, http.MethodPost, s.reloadAll)
	default:
		s.fail(w, http.StatusNotFound, api.CodeNoEndpoint, noEndpoint(r))
	}
}

func noEndpoint(r *http.Request) string {
	acts := make([]string, len(api.Actions))
	for i, a := range api.Actions {
		acts[i] = string(a)
	}
	return fmt.Sprintf("no endpoint %s; the API has /v1/vms, /v1/vms/{name}, /v1/vms/{name}/{info,log,console,saved,receive}, /v1/vms/{name}/{%s}, /v1/events, /v1/reload and /metrics",
		r.URL.Path, strings.Join(acts, ","))
}

// segments splits the path into its unescaped parts, ignoring one
// trailing slash.
func segments(u *url.URL) ([]string, bool) {
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if !strings.HasPrefix(p, "/") {
		return nil, false
	}
	raw := strings.Split(p[1:], "/")
	out := make([]string, len(raw))
	for i, s := range raw {
		v, err := url.PathUnescape(s)
		if err != nil || v == "" {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func (s *Server) method(w http.ResponseWriter, r *http.Request, m string, h http.HandlerFunc) {
	if r.Method != m {
		w.Header().Set("Allow", m)
		s.fail(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed,
			fmt.Sprintf("%s takes %s, not %s", r.URL.Path, m, r.Method))
		return
	}
	h(w, r)
}

// ---- responses ----

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.logf("encoding a response: %v", err)
		status = http.StatusInternalServerError
		data, _ = json.Marshal(api.ErrorBody{Error: "the daemon could not encode its answer: " + err.Error(), Code: api.CodeInternal})
	}
	data = append(data, '\n')
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.writeTO))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func (s *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	s.writeJSON(w, status, api.ErrorBody{Error: msg, Code: code})
}

// failErr answers with the status that fits err.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	body := api.ErrorBody{Error: err.Error()}
	status := http.StatusInternalServerError
	var na *statemachine.NotAllowedError
	switch {
	case errors.Is(err, supervisor.ErrUnknownVM):
		status, body.Code = http.StatusNotFound, api.CodeNotFound
	case errors.As(err, &na):
		status, body.Code, body.State = http.StatusConflict, api.CodeNotAllowed, api.State(na.State)
	case errors.Is(err, statemachine.ErrNotAllowed):
		status, body.Code = http.StatusConflict, api.CodeNotAllowed
	case errors.Is(err, supervisor.ErrInvalidConfig):
		status, body.Code = http.StatusConflict, api.CodeInvalidConfig
		body.Error += "; fix the config file and run 'vmstatedctl reload'"
	case errors.Is(err, hypervisor.ErrExited), errors.Is(err, hypervisor.ErrGone):
		// The hypervisor ended under the request; the VM's actor is
		// about to act on the exit.
		status, body.Code = http.StatusConflict, api.CodeNotAllowed
		body.Error += "; the hypervisor has just exited: see 'vmstatedctl status' and try again"
	case errors.Is(err, console.ErrBusy):
		status, body.Code = http.StatusConflict, api.CodeConsoleBusy
	case errors.Is(err, hypervisor.ErrNotSupported):
		status, body.Code = http.StatusNotImplemented, api.CodeNotSupported
	case errors.Is(err, supervisor.ErrShuttingDown):
		status, body.Code = http.StatusServiceUnavailable, api.CodeShuttingDown
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		status, body.Code = http.StatusGatewayTimeout, api.CodeTimeout
		body.Error = fmt.Sprintf("%s: no answer within %s; try again, or look at 'vmstatedctl log'", r.URL.Path, s.actionTO)
	default:
		body.Code = api.CodeInternal
		s.logf("%s %s: %v", r.Method, r.URL.Path, err)
	}
	s.writeJSON(w, status, body)
}

// ---- requests ----

// checkQuery rejects query parameters the endpoint does not know.
func (s *Server) checkQuery(w http.ResponseWriter, r *http.Request, known ...string) bool {
	for k := range r.URL.Query() {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			msg := fmt.Sprintf("unknown query parameter %q for %s", k, r.URL.Path)
			if len(known) > 0 {
				msg += "; known: " + strings.Join(known, ", ")
			}
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, msg)
			return false
		}
	}
	return true
}

// takeBody reads the request's body, if it has one, within BodyTimeout of
// the headers, whatever the endpoint, and keeps it in memory for the
// handler. A body that does not arrive in time gets 408, one over
// api.MaxBodyBytes 413, and either way the connection closes: the read
// deadline stays in force, so nothing waits for the rest of the body.
// Only a body read in full lifts the deadline, for the server's watch of
// the connection (which tells a handler that its client has gone) must
// not time out.
func (s *Server) takeBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.bodyTO))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(data))
		return true
	}
	_ = rc.SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.fail(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge,
			fmt.Sprintf("request body over %d bytes", api.MaxBodyBytes))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.fail(w, http.StatusRequestTimeout, api.CodeRequestTimeout,
			fmt.Sprintf("the request body did not arrive within %s of the headers; send it with them", s.bodyTO))
	default:
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest, "reading the request body: "+err.Error())
	}
	return false
}

// readBody decodes an optional JSON body into v, refusing unknown fields
// and trailing data. The body is in memory already (takeBody).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest, "reading the request body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("bad JSON body for %s: %v", r.URL.Path, err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("bad JSON body for %s: data after the object", r.URL.Path))
		return false
	}
	return true
}

// lookup returns the VM's status if the caller may act on it, else
// answers the request and returns false.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, name string) (supervisor.Status, bool) {
	st, err := s.sup.Get(name)
	if err != nil {
		if errors.Is(err, supervisor.ErrUnknownVM) {
			s.fail(w, http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("no VM named %q; 'vmstatedctl status' lists the VMs", name))
			return st, false
		}
		s.failErr(w, r, err)
		return st, false
	}
	if !s.mayAct(peerOf(r), st) {
		s.fail(w, http.StatusForbidden, api.CodeForbidden, forbidden(peerOf(r), name))
		return st, false
	}
	return st, true
}

func forbidden(p peer, name string) string {
	if !p.known {
		return fmt.Sprintf("permission denied for VM %s: the daemon could not learn who you are", name)
	}
	return fmt.Sprintf("permission denied for VM %s: uid %d is neither its owner nor in its group; ask root to add you to its owner or group", name, p.cred.UID)
}

// ---- endpoints ----

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	p := peerOf(r)
	all := s.sup.List()
	out := make([]api.Status, 0, len(all))
	for _, st := range all {
		if s.mayAct(p, st) {
			out = append(out, toStatus(st))
		}
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r) {
		return
	}
	st, ok := s.lookup(w, r, name)
	if !ok {
		return
	}
	s.writeJSON(w, http.StatusOK, toStatus(st))
}

func (s *Server) info(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r) {
		return
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.actionTO)
	defer cancel()
	// First: it waits for a hypervisor being re-adopted or relaunched.
	addr, _ := s.sup.VNCAddress(ctx, name)
	info, err := s.sup.Info(ctx, name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if addr != "" && info != nil {
		info["vnc_address"] = addr
		// lookup has checked that the caller may act on the VM.
		if pw, _ := s.sup.VNCPassword(name); pw != "" {
			info["vnc_password"] = pw
		}
	}
	s.writeJSON(w, http.StatusOK, info)
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, name string, a api.Action) {
	var opts api.StopOptions
	var sopts api.SuspendOptions
	if a == api.ActionStop {
		if !s.checkQuery(w, r, "force", "timeout") || !s.readBody(w, r, &opts) || !stopQuery(s, w, r, &opts) {
			return
		}
	} else if a == api.ActionSuspend {
		if !s.checkQuery(w, r) || !s.readBody(w, r, &sopts) {
			return
		}
	} else if !s.checkQuery(w, r) || !s.readBody(w, r, &struct{}{}) {
		return
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.actionTO)
	defer cancel()
	var err error
	switch a {
	case api.ActionStart:
		err = s.sup.Start(ctx, name)
	case api.ActionStop:
		err = s.sup.Stop(ctx, name, supervisor.StopOptions{Force: opts.Force, Timeout: opts.Duration()})
	case api.ActionRestart:
		err = s.sup.Restart(ctx, name)
	case api.ActionFailReset:
		err = s.sup.FailReset(ctx, name)
	case api.ActionPause:
		err = s.sup.Pause(ctx, name)
	case api.ActionUnpause:
		err = s.sup.Unpause(ctx, name)
	case api.ActionReset:
		err = s.sup.Reset(ctx, name)
	case api.ActionNMI:
		err = s.sup.NMI(ctx, name)
	case api.ActionScreenshot:
		s.screenshot(ctx, w, r, name)
		return
	case api.ActionSuspend:
		err = s.sup.Suspend(ctx, name, supervisor.SuspendOptions{Resume: sopts.Resume})
	case api.ActionDiscard:
		err = s.sup.Discard(ctx, name)
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	st, err := s.sup.Get(name)
	if err != nil { // dropped meanwhile
		s.failErr(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, toStatus(st))
}

// stopQuery applies the query parameters force and timeout over the body.
func stopQuery(s *Server, w http.ResponseWriter, r *http.Request, opts *api.StopOptions) bool {
	q := r.URL.Query()
	if v := q.Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("force=%q: want true or false", v))
			return false
		}
		opts.Force = b
	}
	if v := q.Get("timeout"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("timeout=%q: want a number of seconds", v))
			return false
		}
		opts.Timeout = f
	}
	if opts.Timeout < 0 || opts.Timeout > 7*24*3600 || opts.Timeout != opts.Timeout {
		s.fail(w, http.StatusBadRequest, api.CodeBadRequest,
			fmt.Sprintf("timeout %v: want a number of seconds from 0 (the VM's stop_timeout) to 604800", opts.Timeout))
		return false
	}
	return true
}

func (s *Server) screenshot(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) {
	var buf bytes.Buffer
	format, err := s.sup.Screenshot(ctx, name, &buf)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	ct := "application/octet-stream"
	switch format {
	case "png":
		ct = "image/png"
	case "ppm":
		ct = "image/x-portable-pixmap"
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.writeTO))
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) reloadAll(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) || !s.readBody(w, r, &struct{}{}) {
		return
	}
	p := peerOf(r)
	if !s.isAdmin(p) {
		s.fail(w, http.StatusForbidden, api.CodeForbidden,
			fmt.Sprintf("permission denied: only root and uid %d may reload the configs", s.adminUID))
		return
	}
	if s.reload == nil {
		s.fail(w, http.StatusNotImplemented, api.CodeNotSupported, "this daemon cannot reload its configs")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.actionTO)
	defer cancel()
	sum, err := s.reload(ctx)
	if err != nil {
		if errors.Is(err, supervisor.ErrShuttingDown) {
			s.failErr(w, r, err)
			return
		}
		s.fail(w, http.StatusInternalServerError, api.CodeReloadFailed, "reload failed: "+err.Error()+"; the configs in force stay so")
		return
	}
	s.writeJSON(w, http.StatusOK, api.ReloadResult{OK: true, Added: sum.Added, Changed: sum.Changed,
		Removed: sum.Removed, Invalid: sum.Invalid})
}

// ---- streams ----

// startStream sends the headers of a stream at once, so the client knows
// the subscription is in place.
func (s *Server) startStream(w http.ResponseWriter, contentType string) *http.ResponseController {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	return rc
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "after", "vm") {
		return
	}
	q := r.URL.Query()
	var after uint64
	replay := q.Has("after")
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("after=%q: want a sequence number", v))
			return
		}
		after = n
	}
	if !peerOf(r).known {
		s.fail(w, http.StatusForbidden, api.CodeForbidden, "permission denied: the daemon could not learn who you are")
		return
	}
	only := q.Get("vm")
	if only != "" {
		if _, ok := s.lookup(w, r, only); !ok {
			return
		}
	}
	p := peerOf(r)
	admin := s.isAdmin(p)
	var sub *supervisor.Subscription
	if replay {
		sub = s.sup.Bus().SubscribeReplay(after)
	} else {
		sub = s.sup.Bus().Subscribe(0)
	}
	defer sub.Close()
	rc := s.startStream(w, "application/x-ndjson")
	bw := bufio.NewWriter(w)
	ctx := r.Context()
	for {
		var (
			e  supervisor.Event
			ok bool
		)
		select {
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		case e, ok = <-sub.C():
			if !ok {
				return
			}
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
		// Send what is queued in one write.
		for {
			if s.eventVisible(p, admin, only, e) {
				data, _ := json.Marshal(toEvent(e))
				_, _ = bw.Write(append(data, '\n'))
			}
			select {
			case e, ok = <-sub.C():
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if bw.Flush() != nil || rc.Flush() != nil {
			return // the client is gone or stuck
		}
	}
}

func (s *Server) eventVisible(p peer, admin bool, only string, e supervisor.Event) bool {
	if e.VM == "" {
		return true // a notice about the stream itself
	}
	if only != "" && e.VM != only {
		return false
	}
	if admin {
		return true
	}
	st, err := s.sup.Get(e.VM)
	return err == nil && s.mayAct(p, st)
}

func (s *Server) log(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r, "lines", "follow") {
		return
	}
	q := r.URL.Query()
	lines := -1 // all
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("lines=%q: want a number of lines, 0 or more", v))
			return
		}
		lines = n
	}
	follow := false
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("follow=%q: want true or false", v))
			return
		}
		follow = b
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	path, err := s.sup.LogPath(name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	// Follow first, then read the file: a line written in between shows
	// twice rather than not at all.
	var (
		ch   <-chan []byte
		stop func()
	)
	if follow {
		ch, stop, err = s.sup.FollowLog(name)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		defer stop()
	}
	rc := s.startStream(w, "text/plain; charset=utf-8")
	if lines != 0 {
		if err := s.copyTail(w, rc, path, lines); err != nil {
			return
		}
	}
	if !follow {
		return
	}
	_ = rc.Flush()
	ctx := r.Context()
	for {
		var (
			line []byte
			ok   bool
		)
		select {
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		case line, ok = <-ch:
			if !ok {
				return
			}
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
		for ok {
			if _, err := w.Write(line); err != nil {
				return
			}
			select {
			case line, ok = <-ch:
			default:
				ok = false
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// copyTail writes the last n lines of the file (all when n < 0).
func (s *Server) copyTail(w io.Writer, rc *http.ResponseController, path string, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // no log yet
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	size := fi.Size()
	var start int64
	if n > 0 {
		start = tailOffset(f, size, n)
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil
	}
	buf := make([]byte, 32<<10)
	remaining := size - start
	for remaining > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
		k := int64(len(buf))
		if remaining < k {
			k = remaining
		}
		m, err := io.ReadFull(f, buf[:k])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return nil
		}
		remaining -= int64(m)
	}
	return nil
}

// tailOffset finds where the last n lines of the first size bytes of f
// begin, reading backwards in blocks.
func tailOffset(f *os.File, size int64, n int) int64 {
	const block = 16 << 10
	buf := make([]byte, block)
	pos := size
	count := 0
	// A final newline ends the last line; it does not start another.
	skipLast := true
	for pos > 0 {
		k := int64(block)
		if pos < k {
			k = pos
		}
		pos -= k
		if _, err := f.ReadAt(buf[:k], pos); err != nil && err != io.EOF {
			return 0
		}
		for i := k - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				skipLast = false
				continue
			}
			if skipLast {
				skipLast = false
				continue
			}
			count++
			if count == n {
				return pos + i + 1
			}
		}
	}
	return 0
}

// ---- conversions ----

func toStatus(st supervisor.Status) api.Status {
	out := api.Status{
		Name: st.Name, State: api.State(st.State), Desired: api.State(st.Desired), Since: st.Since,
		PID: st.PID, Hypervisor: st.Hypervisor, CPUs: st.CPUs, Memory: st.MemoryMB,
		Owner: st.Owner, Group: st.Group, Description: st.Description, Dir: st.Dir,
		Autostart: st.Autostart, Depends: st.Depends, Restarts: st.Restarts,
		MaxRestart: st.MaxRestart, Reason: st.Reason, ConfigError: st.ConfigError,
		Pending: st.Pending, Removed: st.Removed, Hook: api.State(st.Hook),
		WaitingFor: st.WaitingFor, RecordError: st.RecordError, Recovering: st.Recovering,
		IPAddresses: st.IPAddresses, VNCAddress: st.VNCAddress,
		OnHostShutdown: st.OnHostShutdown,
	}
	if st.Depends != nil {
		out.Depends = append([]string(nil), st.Depends...)
		sort.Strings(out.Depends)
	}
	if x := st.Saved; x != nil {
		out.Saved = &api.SavedState{Size: x.Size, Time: x.Time, SavedBy: x.SavedBy}
	}
	if x := st.LastExit; x != nil {
		out.LastExit = &api.Exit{Reason: string(x.Reason), Code: x.Code, Signal: x.Signal, StatusUnknown: x.StatusUnknown, Detail: x.Detail, Time: x.Time}
	}
	for _, l := range st.Networks {
		n := api.Network{Type: l.Type, Tap: l.Tap, Bridge: l.Bridge, NAT: l.Table != ""}
		if l.Address.IsValid() {
			n.Address, n.Gateway = l.Address.String(), l.Gateway.String()
		}
		out.Networks = append(out.Networks, n)
	}
	return out
}

func toEvent(e supervisor.Event) api.Event {
	return api.Event{Seq: e.Seq, Time: e.Time, Kind: e.Kind, VM: e.VM, Event: string(e.Event),
		From: api.State(e.From), To: api.State(e.To), Reason: e.Reason, Lost: e.Lost, Skipped: e.Skipped}
}
