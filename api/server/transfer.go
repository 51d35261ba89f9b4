package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/savefile"
	"github.com/vmstated/vmstated/supervisor"
)

// transferChunk is how much of a saved guest moves per write or read, each
// bounded by its own deadline.
const transferChunk = 1 << 20

// saved streams a suspended VM's saved guest, then the trailer that lets
// the receiver check it arrived whole (GET /v1/vms/{name}/saved).
func (s *Server) saved(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r) {
		return
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	f, size, err := s.sup.OpenSaved(r.Context(), name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(size+int64(savefile.TrailerSize), 10))
	rc := s.startStream(w, "application/octet-stream")
	h := sha256.New()
	buf := make([]byte, transferChunk)
	var n int64
	for n < size {
		k, err := f.Read(buf[:min(int64(len(buf)), size-n)])
		if k > 0 {
			h.Write(buf[:k])
			_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
			n += int64(k)
		}
		if err != nil {
			// Short: the receiver finds no trailer and refuses it.
			return
		}
	}
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
	_, _ = w.Write(savefile.Trailer(n, h.Sum(nil)))
}

// receive reads a stream that send wrote into a stopped VM and starts it
// from it (POST /v1/vms/{name}/receive). Its body is not taken in memory
// first (takeBody): it is as large as the guest; each read has its own
// deadline instead.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, name string) {
	if !s.checkQuery(w, r) {
		return
	}
	if _, ok := s.lookup(w, r, name); !ok {
		return
	}
	if p := peerOf(r); !s.isAdmin(p) {
		// QEMU parses the stream as it loads it, and its sender made
		// it: a user may hand one only to a QEMU that runs as a user
		// of its own, never to one with the daemon's rights.
		user, err := s.sup.ConfinedUser(r.Context(), name)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		if user == "" {
			w.Header().Set("Connection", "close")
			s.fail(w, http.StatusForbidden, api.CodeForbidden, fmt.Sprintf(
				"permission denied: only root may receive a stream into %s, whose QEMU keeps the daemon's rights while it loads the stream; "+
					"to let its owner and group receive, give it 'qemu { user = ACCOUNT; }' so that QEMU drops to that account", name))
			return
		}
	}
	rc := http.NewResponseController(w)
	body := &deadlineReader{r: r.Body, rc: rc, timeout: s.bodyTO}
	err := s.sup.Receive(r.Context(), name, body)
	_ = rc.SetReadDeadline(time.Time{})
	// However long the stream took, the answer gets its own time.
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
	if err != nil {
		// The rest of a refused stream is not read: the connection goes.
		w.Header().Set("Connection", "close")
		if errors.Is(err, supervisor.ErrBadStream) {
			s.fail(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
			return
		}
		s.failErr(w, r, err)
		return
	}
	st, err := s.sup.Get(name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTO))
	s.writeJSON(w, http.StatusOK, toStatus(st))
}

// deadlineReader gives each read of a request body its own deadline, so
// that a large body may take as long as it needs while a stalled one ends.
type deadlineReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	_ = d.rc.SetReadDeadline(time.Now().Add(d.timeout))
	return d.r.Read(p)
}
