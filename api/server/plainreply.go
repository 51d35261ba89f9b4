package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/vmstated/vmstated/api"
)

// jsonReply turns one of net/http's own error replies into the API's
// JSON error with the same status. net/http answers by itself, in plain
// text, requests it cannot parse (a bad %-escape in the path, headers
// over MaxHeaderBytes, an unknown transfer coding, a bad Expect header)
// before any handler sees them; p is such a reply when it is an HTTP/1.x
// response with a 4xx or 5xx status. Anything else is not touched.
func jsonReply(p []byte) ([]byte, bool) {
	head, body, ok := bytes.Cut(p, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(head, []byte("HTTP/1.0 ")) {
		return nil, false
	}
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	f := strings.SplitN(string(line), " ", 3)
	proto := f[0] // the request's, as net/http answers in kind
	if len(f) < 2 || len(f[1]) != 3 {
		return nil, false
	}
	status, err := strconv.Atoi(f[1])
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	code, msg := api.CodeBadRequest, ""
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		code = api.CodeTooLarge
		msg = fmt.Sprintf("request line and headers over %d KiB; the paths of the API are short", maxHeaderBytes>>10)
	case http.StatusNotImplemented:
		code = api.CodeNotSupported
		msg = "unsupported transfer encoding; send the body with Content-Length or chunked"
	case http.StatusExpectationFailed:
		msg = "unsupported Expect header; the daemon knows only 100-continue"
	default:
		// net/http's text is "<status> <text>" or "<status> <text>: <why>".
		why := strings.TrimPrefix(string(body), f[1]+" "+http.StatusText(status))
		why = strings.TrimSpace(strings.TrimPrefix(why, ":"))
		if why == "" {
			why = "the request could not be parsed: check the request line (every % in the path starts a two-digit hex escape) and the headers"
		}
		msg = "malformed request: " + why
		if status >= 500 {
			code = api.CodeNotSupported
		}
	}
	data, _ := json.Marshal(api.ErrorBody{Error: msg, Code: code})
	data = append(data, '\n')
	out := fmt.Appendf(nil, "%s %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		proto, status, http.StatusText(status), len(data))
	return append(out, data...), true
}
