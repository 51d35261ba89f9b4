// Command vmstatedctl controls vmstated, the VM supervisor, over its unix
// socket: start, stop and watch VMs, read their logs and events, and check
// config directories without a daemon.
//
//	vmstatedctl [-h] [-s sockpath | -H ssh://[user@]host[:port][/socket]] [-o table|json] command [flags] [vmname]
//
// With -H it talks to the daemon of another host through ssh, which runs
// "vmstatedctl dial-stdio" there. Run "vmstatedctl help" for the commands.
// Exit status: 0 success, 1 the operation failed, 2 usage error, 3 the
// daemon cannot be reached, 4 ssh failed, 5 vmstatedctl on the remote host
// is missing or failed.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
