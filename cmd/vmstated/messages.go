package main

import (
	"fmt"
	"strings"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/statemachine"
	"github.com/vmstated/vmstated/supervisor"
)

// exitMessage says, as the daemon exits, what it leaves behind: the VMs
// whose hypervisor keeps running and the VMs caught between states, which
// the next daemon takes over. When every VM was stopped first (as the demo
// does), nothing keeps running and it says so rather than the opposite.
func exitMessage(list []supervisor.Status) string {
	var running, between []string
	for _, st := range list {
		switch {
		case st.PID != 0 || st.State.HypervisorUp():
			running = append(running, st.Name)
		case st.State != statemachine.Stopped && st.State != statemachine.Failed && st.State != statemachine.Suspended:
			between = append(between, st.Name)
		}
	}
	if len(running) == 0 && len(between) == 0 {
		return "exiting; no VM is running"
	}
	var parts []string
	if n := len(running); n > 0 {
		verb := "keep"
		if n == 1 {
			verb = "keeps"
		}
		parts = append(parts, fmt.Sprintf("%s %s running (%s)", countVMs(n), verb, strings.Join(running, ", ")))
	}
	if n := len(between); n > 0 {
		parts = append(parts, fmt.Sprintf("%s between states (%s)", countVMs(n), strings.Join(between, ", ")))
	}
	return "exiting; " + strings.Join(parts, ", ") + ": the next vmstated takes over"
}

func countVMs(n int) string {
	if n == 1 {
		return "1 VM"
	}
	return fmt.Sprintf("%d VMs", n)
}

// invalidNote tells whoever started a background daemon that some VM
// directories did not load: the daemon runs (exit 0), but without those
// VMs, and its own log is where a background daemon reports them. Empty
// when every directory loaded.
func invalidNote(snap *config.Snapshot, logFile string) string {
	bad := len(snap.Invalid)
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d VM directories in %s have config errors and were not loaded; 'vmstated -n -c %s' lists them, as does %s",
		bad, bad+len(snap.VMs), snap.Root, snap.Root, logFile)
}
