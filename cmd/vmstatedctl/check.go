package main

import (
	"fmt"
	"runtime"

	"github.com/vmstated/vmstated/config"
)

// checkResult is check's -o json output.
type checkResult struct {
	Root     string       `json:"root"`
	OK       bool         `json:"ok"`
	VMs      []string     `json:"vms"`
	Invalid  []string     `json:"invalid"`
	Problems []checkIssue `json:"problems"`
}

type checkIssue struct {
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// cmdCheck validates a config root without a daemon, as vmstated -n does.
func cmdCheck(e *env, args []string) error {
	fs := e.newFlags("check")
	root := fs.String("c", hostDefaultPaths().ConfigDir, "config directory")
	if _, err := e.parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *root == "" {
		return usagef("no default config directory (HOME is not set); name one with -c")
	}
	snap := config.LoadRoot(*root, config.LoadOptions{})
	if snap.RootErr != nil {
		return fmt.Errorf("config directory %s: %w; name another with -c", *root, snap.RootErr)
	}
	diags := append(snap.Diagnostics(), config.HostDiagnostics(snap, runtime.GOOS)...)
	res := checkResult{Root: snap.Root, VMs: snap.Names(), Invalid: []string{}, Problems: []checkIssue{}}
	for _, inv := range snap.Invalid {
		res.Invalid = append(res.Invalid, inv.Dir)
	}
	for _, d := range diags {
		res.Problems = append(res.Problems, checkIssue{Severity: d.Severity.String(), Message: d.String()})
	}
	nerr := len(diags.Errors())
	res.OK = nerr == 0
	if e.json() {
		writeJSON(e.stdout, res)
	} else {
		for _, d := range diags {
			fmt.Fprintln(e.stdout, d.String())
		}
		if res.OK {
			fmt.Fprintf(e.stdout, "%s: %d VM(s), configuration ok\n", snap.Root, len(res.VMs))
		}
	}
	if !res.OK {
		return fmt.Errorf("%s: %d error(s) in %d VM directories (%d VM(s) valid); fix them and run 'vmstatedctl check' again",
			snap.Root, nerr, len(snap.Invalid), len(res.VMs))
	}
	return nil
}
