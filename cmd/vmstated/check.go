package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/supervisor"
)

// check loads every VM config under root and prints each problem on its
// own line, like nginx -t. It exits 1 when any config has an error.
func check(root string, lo config.LoadOptions, stdout, stderr io.Writer) int {
	snap := config.LoadRoot(root, lo)
	if snap.RootErr != nil {
		fmt.Fprintf(stderr, "vmstated: %v\n", snap.RootErr)
		return 1
	}
	diags := append(snap.Diagnostics(), config.HostDiagnostics(snap, runtime.GOOS)...)
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	// What the driver would refuse at launch is an error here too.
	launchBad := 0
	for _, name := range snap.Names() {
		vm := snap.VMs[name]
		if err := supervisor.CheckLaunch(vm); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(stderr, "%s: %s\n", vm.File, line)
			}
			launchBad++
		}
	}
	errs := len(diags.Errors())
	if errs > 0 || launchBad > 0 {
		fmt.Fprintf(stderr, "vmstated: %s: %d error(s) in %d VM director%s, %d VM(s) a launch would refuse; %d VM(s) valid\n",
			snap.Root, errs, len(snap.Invalid), plural(len(snap.Invalid), "y", "ies"), launchBad, len(snap.VMs)-launchBad)
		return 1
	}
	fmt.Fprintf(stdout, "vmstated: %s: %d VM(s), configuration ok\n", snap.Root, len(snap.VMs))
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// loadOptions are the config loading settings the flags choose, the same
// for the daemon and for -n.
func (o options) loadOptions() config.LoadOptions {
	return config.LoadOptions{QEMUUser: o.qemuUser}
}
