package hooks

import (
	"slices"
	"strconv"
	"strings"
)

// Env is what a hook learns about its VM. Run turns it into the hook's
// environment, its arguments and its working directory.
//
// The environment is deliberately small: PATH (see the PATH constant) and
// the VMSTATED_ variables below. Nothing is inherited from the daemon: no
// HOME, no locale, no TERM, so a hook behaves the same whether the daemon
// was started by hand or by the init system. A hook that needs more sets it
// itself.
type Env struct {
	// Name is the VM's name: argv[1] and VMSTATED_NAME.
	Name string
	// State is the state being entered; the hook's file name, argv[2] and
	// VMSTATED_STATE.
	State string
	// PreviousState is the state the VM is leaving (VMSTATED_PREVIOUS_STATE).
	PreviousState string
	// Reason says why the transition happens, e.g. "start requested" or a
	// failure reason (VMSTATED_REASON).
	Reason string
	// ConfigDir is the VM's config directory: the hook's working directory
	// and VMSTATED_CONFIG_DIR.
	ConfigDir string
	// PID is the hypervisor's process id; 0 when none runs, and then
	// VMSTATED_PID is not set.
	PID int
	// Restarts is the number of automatic restarts in the current window
	// (VMSTATED_RESTARTS).
	Restarts int
	// Config holds the VM's scalar config values, nested keys joined with
	// dots ("qemu.accel"). Each becomes VMSTATED_CFG_<KEY>: the key in upper
	// case, every character outside [A-Z0-9_] replaced by '_'. When two keys
	// map to the same name, the one that sorts first wins. Values holding a
	// NUL byte cannot be passed to a process and are left out.
	Config map[string]string
	// Network holds variables about the networks the daemon set up for
	// the VM (VMSTATED_TAPS and the like), set as given; they win over
	// Config's.
	Network map[string]string
}

// Environ returns the hook's environment as KEY=value strings, sorted by
// key so that it is the same on every run.
func (e Env) Environ() []string {
	vars := map[string]string{
		"PATH":                    PATH,
		"VMSTATED_NAME":           e.Name,
		"VMSTATED_STATE":          e.State,
		"VMSTATED_PREVIOUS_STATE": e.PreviousState,
		"VMSTATED_REASON":         e.Reason,
		"VMSTATED_CONFIG_DIR":     e.ConfigDir,
		"VMSTATED_RESTARTS":       strconv.Itoa(e.Restarts),
	}
	if e.PID > 0 {
		vars["VMSTATED_PID"] = strconv.Itoa(e.PID)
	}
	for k, v := range e.Network {
		vars[k] = v
	}
	keys := make([]string, 0, len(e.Config))
	for k := range e.Config {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := ConfigVar(k)
		v := e.Config[k]
		if name == "" || strings.IndexByte(v, 0) >= 0 {
			continue
		}
		if _, taken := vars[name]; !taken {
			vars[name] = v
		}
	}
	for k, v := range vars {
		if strings.IndexByte(v, 0) >= 0 {
			vars[k] = strings.ReplaceAll(v, "\x00", "")
		}
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// ConfigVar returns the environment variable name for a config key:
// VMSTATED_CFG_ followed by the key in upper case with every character
// outside [A-Z0-9_] replaced by '_'. It returns "" for an empty key.
func ConfigVar(key string) string {
	if key == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("VMSTATED_CFG_")
	for _, r := range strings.ToUpper(key) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
