// Package daemon holds the process plumbing of vmstated: where its files live
// by default, the pidfile that keeps one instance per host, going to the
// background without losing start-up errors, and readiness notification to a
// service manager.
//
// A typical main, after parsing flags:
//
//	if !foreground {
//		child, err := daemon.Background(ctx, "")
//		if !child {
//			if err != nil {
//				fmt.Fprintln(os.Stderr, "vmstated:", err)
//				os.Exit(1)
//			}
//			os.Exit(0) // the daemon in the background is ready
//		}
//	}
//	ready := daemon.ChildReadiness() // no-op in the foreground
//	pid, err := daemon.LockPidfile(paths.Pidfile)
//	if err != nil {
//		ready.Fail(err)
//		...
//	}
//	defer pid.Close()
//	// install signal handlers, load configs, bind the control socket, then:
//	ready.Ready()
//	daemon.NotifyReady()
//
// Signal handlers go in before Ready: the caller may signal the daemon as
// soon as it has been told the daemon is up.
//
// The pidfile is locked in the process that keeps running, so after
// backgrounding it holds the background process's pid, and a second instance
// started in the background reports the holder's pid through the parent.
package daemon
