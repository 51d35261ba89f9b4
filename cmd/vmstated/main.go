// Command vmstated is the VM supervisor daemon: it loads one directory per
// VM from its config root, drives every VM through its lifecycle, and
// answers vmstatedctl on a unix socket. See vmstated(8).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/vmstated/vmstated/daemon"
)

// options are the daemon's command-line settings.
type options struct {
	paths      daemon.Paths
	foreground bool
	verbose    bool
	check      bool
	// qemuUser is the user QEMU VMs drop to when their config names none.
	qemuUser string
}

const usage = `usage: vmstated [-fhnv] [-c configdir] [-p pidfile] [-s socket] [-l logdir] [-S statedir] [-R rundir] [-U user]

  -c configdir  config root: one sub-directory per VM (default %s)
  -f            stay in the foreground (for service managers and debugging)
  -h            print this help and exit
  -n            check every VM config, print each problem, exit 0 if all are valid
  -p pidfile    pidfile, locked while the daemon runs (default %s)
  -s socket     control socket for vmstatedctl (default %s)
  -l logdir     per-VM logs, <name>.log (default %s)
  -S statedir   per-VM state records (default %s)
  -R rundir     per-VM runtime files: sockets, pidfiles, hook journals (default %s)
  -U user       the user QEMU runs as when a VM's config names none (root only)
  -v            verbose: log debug messages too
`

// parseFlags reads the command line; errors are usage errors (exit 2).
func parseFlags(args []string, stderr io.Writer) (options, error) {
	def := daemon.DefaultPaths(os.Geteuid(), runtime.GOOS, os.Getenv)
	o := options{paths: def}
	fs := flag.NewFlagSet("vmstated", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.paths.ConfigDir, "c", def.ConfigDir, "")
	fs.StringVar(&o.paths.Pidfile, "p", def.Pidfile, "")
	fs.StringVar(&o.paths.Socket, "s", def.Socket, "")
	fs.StringVar(&o.paths.LogDir, "l", def.LogDir, "")
	fs.StringVar(&o.paths.StateDir, "S", def.StateDir, "")
	fs.StringVar(&o.paths.RunDir, "R", def.RunDir, "")
	fs.BoolVar(&o.foreground, "f", false, "")
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.BoolVar(&o.check, "n", false, "")
	fs.StringVar(&o.qemuUser, "U", "", "")
	help := fs.Bool("h", false, "")
	printUsage := func() {
		fmt.Fprintf(stderr, usage, def.ConfigDir, def.Pidfile, def.Socket, def.LogDir, def.StateDir, def.RunDir)
	}
	if err := fs.Parse(args); err != nil {
		printUsage()
		return o, err
	}
	if *help {
		printUsage()
		return o, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		printUsage()
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	abs, err := o.paths.Absolute()
	if err != nil {
		return o, err
	}
	o.paths = abs
	return o, nil
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain returns the exit status: 0 success, 1 failure, 2 usage.
func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmstated: %v\n", err)
		return 2
	}
	if o.check {
		return check(o.paths.ConfigDir, o.loadOptions(), stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if !o.foreground {
		child, err := daemon.Background(ctx, "")
		if !child {
			if err != nil {
				fmt.Fprintf(stderr, "vmstated: %v\n", err)
				return 1
			}
			return 0
		}
	}
	if err := run(ctx, o, stderr); err != nil {
		fmt.Fprintf(stderr, "vmstated: %v\n", err)
		return 1
	}
	return 0
}
