// Package api holds vmstated's control API as seen by clients: the wire
// types (Status, Event, StopOptions, ErrorBody, ...) and a Go client.
// The server lives in package api/server; README.md beside this file
// documents every endpoint with curl examples.
//
// The API is HTTP/1.1 with JSON bodies over the daemon's unix socket,
// versioned under /v1/:
//
//	GET  /v1/vms                      list the VMs the caller may see
//	GET  /v1/vms/{name}               one VM's status
//	POST /v1/vms/{name}/{action}      start, stop, restart, failreset, pause,
//	                                  unpause, reset, nmi, screenshot
//	GET  /v1/vms/{name}/info          what the hypervisor says about itself
//	GET  /v1/vms/{name}/log           the VM's log (?lines=N, ?follow=true)
//	GET  /v1/events                   NDJSON event stream (?after=SEQ, ?vm=NAME)
//	POST /v1/reload                   rescan the config directories
//	GET  /metrics                     Prometheus text (not versioned: the
//	                                  path scrapers ask for)
//
// Every error is a JSON ErrorBody {"error": ..., "code": ...} with a
// fitting status: 400 bad input, 403 not the caller's VM, 404 no such VM
// or endpoint, 405 wrong method, 409 not allowed in the VM's state (the
// body names the state) or invalid config, 413 body too large, 501 the
// hypervisor cannot do it, 503 the daemon is exiting.
//
// Callers are identified by the kernel (peer credentials); root and the
// daemon's own user may do everything, a VM's owner and the members of its
// group may see and act on that VM, and nobody else sees it at all.
//
// The client and the types import no other package of the project (the
// state names are repeated here, kept equal to the daemon's by a test),
// so programs that only talk to the daemon stay small. NewClientDialer
// takes any stream to a daemon's socket; package api/remote makes one
// through ssh.
package api
