package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/api/server"
	"github.com/vmstated/vmstated/config"
	"github.com/vmstated/vmstated/daemon"
	"github.com/vmstated/vmstated/hypervisor"
	"github.com/vmstated/vmstated/hypervisor/bhyve"
	"github.com/vmstated/vmstated/hypervisor/exec"
	"github.com/vmstated/vmstated/hypervisor/qemu"
	"github.com/vmstated/vmstated/supervisor"
	"gopkg.in/natefinch/lumberjack.v2"
)

// run is the daemon: it returns when ctx ends (SIGTERM, SIGINT), leaving
// every VM running, or when start-up fails.
func run(ctx context.Context, o options, stderr io.Writer) (err error) {
	ready := daemon.ChildReadiness()
	defer func() {
		if err != nil {
			ready.Fail(err)
		}
	}()
	if err := o.paths.Ensure(); err != nil {
		return err
	}
	pid, err := daemon.LockPidfile(o.paths.Pidfile)
	if err != nil {
		return err
	}
	defer pid.Close()

	log := newLogger(o, stderr)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	watcher, err := config.NewWatcher(o.paths.ConfigDir, config.WatchOptions{
		LoadOptions: config.LoadOptions{Logf: func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) }, QEMUUser: o.qemuUser},
	})
	if err != nil {
		return err
	}
	initial := watcher.Initial()
	if initial.RootErr != nil {
		return initial.RootErr
	}
	for _, d := range append(initial.Diagnostics(), config.HostDiagnostics(initial, runtime.GOOS)...) {
		log.Warn(d.String())
	}

	// The actors outlive ctx only as long as it takes them to notice; the
	// hypervisors outlive the daemon.
	supCtx, stopActors := context.WithCancel(context.Background())
	sup := supervisor.New(supCtx, supervisor.Options{
		RunDir:   o.paths.RunDir,
		LogDir:   o.paths.LogDir,
		StateDir: o.paths.StateDir,
		Drivers:  drivers(),
		Logf:     func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) },
	})
	defer func() {
		stopActors()
		sup.Wait()
	}()
	first, err := supervisor.FirstStartThisBoot(o.paths.RunDir)
	if err != nil {
		log.Warn("cannot tell whether the host has rebooted; not autostarting", "err", err)
	}
	sup.Load(initial, supervisor.LoadOptions{FirstStartThisBoot: first})

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- watcher.Run(watchCtx) }()
	// Every config change after the first load reaches the VMs here. The
	// watcher closes its changes when it stops, which ends Follow; the
	// actors outlive both (deferred above, so they end after).
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		sup.Follow(watcher.Changes())
	}()
	defer func() {
		stopWatch()
		<-followDone
	}()
	reload := func(ctx context.Context) (supervisor.ReloadSummary, error) {
		return sup.Reload(ctx, watcher.Request)
	}

	l, err := server.Listen(o.paths.Socket)
	if err != nil {
		return err
	}
	srv := server.New(sup, server.Options{
		Reload: reload,
		Logf:   func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
	})
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx, l) }()

	log.Info("vmstated ready", "pid", os.Getpid(), "config", o.paths.ConfigDir, "socket", o.paths.Socket,
		"vms", len(initial.VMs), "invalid", len(initial.Invalid))
	ready.Note(invalidNote(initial, daemonLogFile(o)))
	if err := ready.Ready(); err != nil {
		log.Warn("telling the parent we are ready", "err", err)
	}
	_ = daemon.NotifyReady()

	for {
		select {
		case <-hup:
			log.Info("SIGHUP: rescanning the config root")
			_ = daemon.NotifyReloading()
			// READY=1 follows once the changes reached the VMs, as
			// systemd's Type=notify-reload expects.
			rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
			sum, err := reload(rctx)
			cancel()
			if err != nil {
				log.Warn("reload", "err", err)
			} else {
				log.Info("reloaded", "added", len(sum.Added), "changed", len(sum.Changed),
					"removed", len(sum.Removed), "invalid", len(sum.Invalid))
			}
			_ = daemon.NotifyReady()
		case err := <-serveDone:
			if err != nil {
				return err
			}
			serveDone = nil
		case err := <-watchDone:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("config watcher: %w", err)
			}
			watchDone = nil
		case <-ctx.Done():
			_ = daemon.NotifyStopping()
			log.Info(exitMessage(sup.List()))
			return nil
		}
	}
}

// reloadTimeout bounds the wait for a rescan asked for by SIGHUP: a VM
// stuck in a step still gets its change, later.
const reloadTimeout = 30 * time.Second

// daemonLogFile is where the daemon logs when in the background.
func daemonLogFile(o options) string {
	return filepath.Join(o.paths.LogDir, config.DaemonLogName+".log")
}

// drivers returns the hypervisor drivers this build has.
func drivers() map[string]hypervisor.Driver {
	return map[string]hypervisor.Driver{
		"qemu":  qemu.New(),
		"bhyve": bhyve.New(),
		"exec":  exec.New(),
	}
}

// newLogger writes the daemon's own log: to stderr in the foreground, to
// <logdir>/vmstated.log in the background.
func newLogger(o options, stderr io.Writer) *slog.Logger {
	var w io.Writer = stderr
	if !o.foreground {
		w = &lumberjack.Logger{Filename: daemonLogFile(o), MaxSize: 10, MaxBackups: 5}
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
