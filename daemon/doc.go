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
//	if err := paths.Ensure(); err != nil {
//		ready.Fail(err)
//		...
//	}
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
//
// # Going to the background
//
// Background re-executes the running binary (os.Executable) with the same
// arguments, detached from the terminal by setsid(2), stdin on /dev/null and
// stdout/stderr on /dev/null or a file the caller names. The child gets the
// write end of a pipe as file descriptor 3 and the environment variable
// VMSTATED_DAEMON_CHILD=3 saying so. The child sends exactly one message and
// closes its end:
//
//	READY\n            configs loaded, socket bound: the parent exits 0
//	FAIL <message>     start-up failed: the parent prints <message>, exits 1
//
// If the pipe closes without a message the child died; the parent waits for
// it and reports its exit status. The parent never takes the pidfile lock:
// the child does, so the pidfile holds the pid of the process that keeps
// running. The child's end of the pipe is made close-on-exec and the marker
// removed from the environment when the package initialises, so hooks and VM
// processes inherit neither.
//
// Under a service manager, run in the foreground (-f) with Type=notify and
// let Notify report readiness instead.
package daemon
