package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/vmstated/vmstated/config"
)

// check loads every VM config under root and prints each problem on its
// own line, like nginx -t. It exits 1 when any config has an error.
func check(root string, stdout, stderr io.Writer) int {
	snap := config.LoadRoot(root, config.LoadOptions{})
	if snap.RootErr != nil {
		fmt.Fprintf(stderr, "vmstated: %v\n", snap.RootErr)
		return 1
	}
	diags := append(snap.Diagnostics(), config.HostDiagnostics(snap, runtime.GOOS)...)
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	errs := len(diags.Errors())
	if errs > 0 {
		fmt.Fprintf(stderr, "vmstated: %s: %d error(s) in %d VM director%s; %d VM(s) valid\n",
			snap.Root, errs, len(snap.Invalid), plural(len(snap.Invalid), "y", "ies"), len(snap.VMs))
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
