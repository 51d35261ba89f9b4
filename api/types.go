package api

import "time"

// Version is the path prefix of this version of the API.
const Version = "/v1"

// MaxBodyBytes bounds a request body; larger ones get 413.
const MaxBodyBytes = 64 << 10

// ConsoleProtocol is the Upgrade token of GET /v1/vms/{name}/console: the
// connection then carries the frames of package console both ways.
const ConsoleProtocol = "vmstated-console.v1"

// Status is one VM as GET /v1/vms and GET /v1/vms/{name} show it.
type Status struct {
	Name    string `json:"name"`
	State   State  `json:"state"`
	Desired State  `json:"desired"`
	// Since is when the VM entered State.
	Since time.Time `json:"since"`
	// PID is the hypervisor's process id while one runs, else 0.
	PID        int    `json:"pid"`
	Hypervisor string `json:"hypervisor"`
	CPUs       int    `json:"cpus"`
	// Memory is the guest memory in MiB.
	Memory      int64  `json:"memory"`
	Owner       string `json:"owner,omitempty"`
	Group       string `json:"group,omitempty"`
	Description string `json:"description,omitempty"`
	Dir         string `json:"dir,omitempty"`
	Autostart   bool   `json:"autostart"`
	// Depends lists the VMs that must run before this one.
	Depends []string `json:"depends,omitempty"`
	// Restarts counts the automatic restarts inside the current budget
	// window; MaxRestart is the budget.
	Restarts   int `json:"restarts"`
	MaxRestart int `json:"maxrestart"`
	// Reason says why the VM is in its state (the failure reason when
	// failed).
	Reason string `json:"reason,omitempty"`
	// ConfigError holds the problems of a config that did not load; the
	// previous config stays in force.
	ConfigError string `json:"config_error,omitempty"`
	// Pending is true when a changed config waits for the next start.
	Pending bool `json:"pending"`
	// Removed is true when the VM's directory is gone while it runs.
	Removed bool `json:"removed,omitempty"`
	// LastExit is how the hypervisor last ended.
	LastExit *Exit `json:"last_exit,omitempty"`
	// Hook names the state whose hook the VM waits for. A running VM
	// with no hook pending is up: the VMs that depend on it start, and
	// vmstatedctl start -w returns.
	Hook State `json:"hook,omitempty"`
	// WaitingFor lists the VMs a start waits for: the VM is stopped and
	// starts once they are up.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Recovering is set after a daemon restart until the VM's hypervisor
	// has been taken over or found gone: the state shown is the recorded
	// one, not yet confirmed, and the VM does not count as up.
	Recovering bool `json:"recovering,omitempty"`
	// RecordError says why the VM's state record could not be written
	// (a full or read-only state directory); the daemon retries until it
	// is, and a start launches nothing while it cannot be.
	RecordError string `json:"record_error,omitempty"`
	// IPAddresses are the guest's addresses as its guest agent last
	// reported them (guest_agent = true; polled while the VM runs),
	// without loopback and link-local ones.
	IPAddresses []string `json:"ip_addresses,omitempty"`
	// VNCAddress is where VNC clients reach the VM (vnc = auto), while
	// the daemon's relay listens.
	VNCAddress string `json:"vnc_address,omitempty"`
	// Networks are what the daemon set up for the VM's NICs of type
	// bridge and local, in NIC order.
	Networks []Network `json:"networks,omitempty"`
	// OnHostShutdown is what a host shutdown (vmstatedctl shutdown) does
	// to the VM: "stop" or "suspend".
	OnHostShutdown string `json:"on_host_shutdown,omitempty"`
	// Saved describes the guest state a suspend saved, while the VM is
	// suspended (or failed after a restore that did not work).
	Saved *SavedState `json:"saved,omitempty"`
}

// Network is what the daemon set up for one NIC.
type Network struct {
	// Type is bridge or local.
	Type string `json:"type"`
	// Tap is the host's tap device.
	Tap    string `json:"tap"`
	Bridge string `json:"bridge,omitempty"`
	// Address is the guest's address (local), Gateway the host's end of
	// its /31.
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// NAT is true when the guest's traffic is masqueraded.
	NAT bool `json:"nat,omitempty"`
}

// SavedState is a suspended VM's saved guest: a file in the daemon's
// state directory.
type SavedState struct {
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Time is when the guest was saved.
	Time time.Time `json:"time"`
	// SavedBy names the hypervisor and version that saved it.
	SavedBy string `json:"saved_by,omitempty"`
}

// Exit is how a hypervisor process ended.
type Exit struct {
	// Reason is poweroff, reboot, crash or killed.
	Reason string `json:"reason"`
	// Code is the exit status, -1 when killed by a signal or unknown.
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	// StatusUnknown: the exit status of a process re-adopted after a
	// daemon restart could not be learnt; Reason is then
	// inferred from what was asked of it (poweroff after a stop).
	StatusUnknown bool      `json:"status_unknown,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	Time          time.Time `json:"time"`
}

// Event kinds.
const (
	// KindTransition: a VM moved from one state to another.
	KindTransition = "transition"
	// KindConfig: a VM's config was added, changed, removed or found
	// invalid.
	KindConfig = "config"
	// KindHook: the hook of state To finished; Reason is empty when it
	// succeeded, else why it failed (a transition follows).
	KindHook = "hook"
	// KindRecord: the VM's state record could not be written (Reason says
	// why; the daemon retries), or was written again (Reason "saved").
	KindRecord = "record"
	// KindAdopted: a running hypervisor was taken over, after a daemon
	// restart or found running before a launch; Reason names it.
	KindAdopted = "adopted"
	// KindProgress: how far a suspend has got saving the guest; Reason
	// says it in words.
	KindProgress = "progress"
	// KindLost: events were missed; resume after Seq or re-read the
	// status.
	KindLost = "lost"
)

// Event is one line of GET /v1/events.
type Event struct {
	// Seq numbers the events, upwards across daemon restarts too; a
	// KindLost event carries the last sequence number before the gap.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	VM     string    `json:"vm,omitempty"`
	Event  string    `json:"event,omitempty"`
	From   State     `json:"from,omitempty"`
	To     State     `json:"to,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Lost counts the events a KindLost entry stands for, when known.
	Lost uint64 `json:"lost,omitempty"`
	// Skipped marks a KindHook event of a state that has no hook: its
	// step is done all the same.
	Skipped bool `json:"skipped,omitempty"`
}

// Action is what POST /v1/vms/{name}/{action} does.
type Action string

// The actions.
const (
	ActionStart      Action = "start"
	ActionStop       Action = "stop"
	ActionRestart    Action = "restart"
	ActionFailReset  Action = "failreset"
	ActionPause      Action = "pause"
	ActionUnpause    Action = "unpause"
	ActionReset      Action = "reset"
	ActionNMI        Action = "nmi"
	ActionScreenshot Action = "screenshot"
	ActionSuspend    Action = "suspend"
	ActionDiscard    Action = "discard"
)

// Actions lists every action.
var Actions = []Action{
	ActionStart, ActionStop, ActionRestart, ActionFailReset, ActionPause,
	ActionUnpause, ActionReset, ActionNMI, ActionScreenshot, ActionSuspend,
	ActionDiscard,
}

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	for _, k := range Actions {
		if a == k {
			return true
		}
	}
	return false
}

// StopOptions is the body of POST /v1/vms/{name}/stop (also accepted as
// the query parameters force and timeout).
type StopOptions struct {
	// Force kills the hypervisor without asking the guest first.
	Force bool `json:"force,omitempty"`
	// Timeout, in seconds, replaces the VM's stop_timeout for this stop;
	// 0 keeps it.
	Timeout float64 `json:"timeout,omitempty"`
}

// SuspendOptions is the body of POST /v1/vms/{name}/suspend.
type SuspendOptions struct {
	// Resume keeps the VM wanted running, so that the next daemon start
	// (after a reboot) restores it: what a host shutdown asks for.
	Resume bool `json:"resume,omitempty"`
}

// Duration returns Timeout as a time.Duration.
func (o StopOptions) Duration() time.Duration {
	return time.Duration(o.Timeout * float64(time.Second))
}

// Info is the body of GET /v1/vms/{name}/info: what the hypervisor says
// about itself (for QEMU: version, CPUs, block devices, PCI devices, VNC).
type Info map[string]any

// ReloadResult is the body of a successful POST /v1/reload, sent once the
// changes have reached the VMs (a running VM's new config waits for its
// next start, shown as pending in its status).
type ReloadResult struct {
	OK      bool     `json:"ok"`
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Invalid maps each VM whose config did not load to its errors; its
	// previous config stays in force.
	Invalid map[string]string `json:"invalid,omitempty"`
}

// Error codes, the "code" member of an error body.
const (
	CodeBadRequest       = "bad_request"        // 400: malformed JSON, unknown fields, bad query
	CodeForbidden        = "forbidden"          // 403: the caller may not act on this VM
	CodeNotFound         = "not_found"          // 404: no VM of that name
	CodeNoEndpoint       = "no_endpoint"        // 404: no such path
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeRequestTimeout   = "request_timeout"    // 408: the request body did not arrive in time
	CodeNotAllowed       = "not_allowed"        // 409: not allowed in the VM's current state
	CodeInvalidConfig    = "invalid_config"     // 409: the VM has no valid config
	CodeConsoleBusy      = "console_busy"       // 409: another client types into the console
	CodeTooLarge         = "too_large"          // 413: request body over MaxBodyBytes; 431: headers too large
	CodeInternal         = "internal"           // 500
	CodeReloadFailed     = "reload_failed"      // 500: the config rescan failed
	CodeNotSupported     = "not_supported"      // 501: the hypervisor cannot do it
	CodeShuttingDown     = "shutting_down"      // 503: the daemon is exiting
	CodeTimeout          = "timeout"            // 504: the hypervisor did not answer in time

	// CodeTooManyConnections comes with 429 when the caller's uid holds
	// its share of the daemon's connections, and with 503 when the daemon
	// holds all it takes.
	CodeTooManyConnections = "too_many_connections"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// State is the VM's state, for CodeNotAllowed.
	State State `json:"state,omitempty"`
}
