package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/atomicfile"
	"github.com/vmstated/vmstated/deporder"
)

func init() {
	commands = []*cmd{
		{name: "start", args: "[-w] [-c] vmname", summary: "start a VM (after the VMs it depends on)", vmArg: 1, run: cmdStart},
		{name: "stop", args: "[-f] [-w] [-t seconds] (-a | vmname)", summary: "stop a VM (after the VMs that depend on it), or all with -a", vmArg: 1, run: cmdStop},
		{name: "shutdown", args: "[-t seconds]", summary: "stop every VM for a host shutdown, forcing at a deadline", run: cmdShutdown},
		{name: "restart", args: "[-w] vmname", summary: "relaunch a running VM's hypervisor", vmArg: 1, run: cmdRestart},
		{name: "status", aliases: []string{"show"}, args: "[-r] [vmname]", summary: "show the VMs, or one VM in detail", vmArg: 1, run: cmdStatus},
		{name: "wait", args: "[-t seconds] vmname [state]", summary: "wait until a VM reaches a state", vmArg: 1, run: cmdWait},
		{name: "failreset", args: "vmname", summary: "take a failed VM back to stopped", vmArg: 1, run: simpleAction(api.ActionFailReset)},
		{name: "pause", args: "vmname", summary: "freeze a running VM's guest", vmArg: 1, run: simpleAction(api.ActionPause)},
		{name: "unpause", args: "vmname", summary: "thaw a paused VM's guest", vmArg: 1, run: simpleAction(api.ActionUnpause)},
		{name: "suspend", args: "[-n] vmname", summary: "save a running VM's guest to a file and take the VM down (start restores it)", vmArg: 1, run: cmdSuspend},
		{name: "send", args: "vmname", summary: "write a VM's saved guest to standard output (suspending it first); then stop it here", vmArg: 1, run: cmdSend},
		{name: "receive", args: "vmname", summary: "restore a guest that send wrote, from standard input, into a stopped VM", vmArg: 1, run: cmdReceive},
		{name: "discard", args: "vmname", summary: "drop a suspended VM's saved guest; the VM is then stopped", vmArg: 1, run: simpleAction(api.ActionDiscard)},
		{name: "reset", args: "vmname", summary: "hard-reset a VM's guest (the reset button)", vmArg: 1, run: simpleAction(api.ActionReset)},
		{name: "nmi", args: "vmname", summary: "inject a non-maskable interrupt", vmArg: 1, run: simpleAction(api.ActionNMI)},
		{name: "screenshot", args: "vmname file", summary: "save an image of a VM's display ('-' = stdout)", vmArg: 1, run: cmdScreenshot},
		{name: "info", args: "[-a] vmname", summary: "show what the hypervisor says about a running VM", vmArg: 1, run: cmdInfo},
		{name: "log", args: "[-f] [-n lines] vmname", summary: "show a VM's log", vmArg: 1, run: cmdLog},
		{name: "vnc", args: "vmname", summary: "print the address where VNC clients reach a VM (vnc = auto)", vmArg: 1, run: cmdVNC},
		{name: "console", args: "[-f] [-r] [-e char] [-n lines] vmname", summary: "attach the terminal to a VM's serial console", vmArg: 1, run: cmdConsole},
		{name: "events", args: "[-after seq] [vmname]", summary: "stream state changes as they happen", vmArg: 1, run: cmdEvents},
		{name: "reload", args: "", summary: "rescan the config directories now", run: cmdReload},
		{name: "check", args: "[-c configdir]", summary: "validate config directories (no daemon needed)", run: cmdCheck},
		{name: "create", args: "disk [-f raw|qcow2] [-s size] [-b base | -i input] path | vm [-m size] [-p cpus] [-d disk]... [-r iso] [-k kernel] [-i initrd] [-a append] [-n network]... [-t template] [-c configdir] vmname", summary: "make a disk image or a new VM directory (no daemon needed)", run: cmdCreate},
		{name: "dial-stdio", args: "", summary: "connect stdin and stdout to the daemon's socket (what -H runs remotely)", run: cmdDialStdio},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script", run: cmdCompletion},
		{name: "help", args: "[command]", summary: "describe the commands", run: cmdHelp},
		{name: "__complete", args: "words...", hidden: true, run: cmdComplete},
	}
}

// cmdDetails are the longer descriptions shown by 'help command'.
var cmdDetails = map[string]string{
	"start": `-w waits until the VM is up (running, its running hook finished),
showing each state it passes, and fails
(exit 1, with the reason) if it ends in failed or stopped instead.
-c then attaches to its console from the first byte of the boot (see console).`,
	"stop": `-f kills the hypervisor at once instead of asking the guest to power off.
-t seconds replaces the VM's stop_timeout for this stop.
-w waits until the VM is stopped; exit 1 if it ends in failed.
The VMs that depend on it and run (or are starting) are stopped first, and
waited for, whether or not -w is given; it says which.
-a stops every VM you may act on, dependants before the VMs they depend on,
waiting for each group to stop before the next.`,
	"shutdown": `What the service files run when the host shuts down. Every VM stops
at once in its own way (its stop_timeout still forces it), except that a
VM waits until the VMs that depend on it have stopped. Whatever is still
up when -t seconds (default 300) have passed is forced, dependants still
first; the command ends within 10 s after that. Prints how each VM ended
(powered off, forced at the deadline, forced after its stop_timeout,
already stopped, failed) and how long it took; exit 1 if a VM failed or
did not stop. A VM with on_host_shutdown = suspend is suspended instead,
and resumes at the first daemon start after the reboot.`,
	"restart": `Restarting does not count toward the restart budget.
-w waits until the VM runs again.`,
	"status": `Without a name: one line per VM. With a name: every detail of that VM.
-r lists only VMs whose hypervisor is up (running, paused, restarting or
stopping).`,
	"wait": `Without a state, waits until the VM settles in stopped, running, paused
or failed. Exit 1 if it settles in failed (unless failed was asked for),
or when -t seconds pass first.`,
	"suspend": `Pauses the guest, saves its memory and device state to a file in the
daemon's state directory, ends the hypervisor and runs the teardown hooks
(suspending, stop_storage, stop_network; then suspended). Shows how far
the save has got, and waits until the VM is suspended; exit 1 if it is
not (a save that fails leaves the guest running). -n returns once the
suspend has begun. 'vmstatedctl start' restores the guest where it was;
'vmstatedctl discard' drops the saved state. QEMU VMs only.`,
	"send": `As OpenBSD's vmctl send: vmstatedctl send web | ssh host2 vmstatedctl receive web.
A running or paused VM is suspended first (progress on standard error);
its saved guest is then written to standard output with a header (VM
name, QEMU version, config digest) and a checksum. Only once the whole
stream is written is the VM stopped here and its saved guest dropped; a
send cut short leaves it suspended, and 'start' resumes it on this host.`,
	"receive": `Reads what send wrote from standard input into the stopped VM of that
name (its directory must exist on this host, with the same virtual
hardware) and starts it from there, waiting until it runs. The header is
checked first (VM name, QEMU version, config digest), then the checksum;
a stream that does not fit, or arrives truncated or damaged, is refused
and the VM stays stopped.`,
	"discard": `Drops the saved guest of a suspended VM, or of a failed one whose
restore did not work (its reason says why), and leaves the VM stopped:
the next start boots it afresh.`,
	"info": `Shows the hypervisor's version, state, accelerator, CPUs, disks, PCI
devices, VNC and character devices; -a shows every detail it reports,
-o json all of it as JSON.`,
	"log": `-n lines shows only the last lines (-n 0: none, so -f -n 0 shows only
new lines); -f keeps following new lines until interrupted.`,
	"console": `Detach with Ctrl-] (-e char changes it: one character, or ^X).
-n lines replays the last lines of output first (default a screenful).
One client types at a time: -f takes the console over from another,
-r attaches read-only. Exit 0 on detach or when the VM stops; exit 1
if the daemon goes away (attach again once it is back).`,
	"events": `Each line: time, sequence number, VM, transition and reason. -after seq
resumes after a sequence number seen before; a "lost" line tells of
events that are gone.`,
	"check": `Loads every VM directory of configdir (default: the daemon's) and prints
each problem; exit 1 if any config has errors.`,
	"create": `create disk makes a disk image at path, which must not exist:
-f raw|qcow2 (default raw, qcow2 with -b), -s size in bytes or with a
K, M, G or T suffix (powers of 1024, fractions allowed: 4.5G), rounded
up to whole MB; -b base makes a qcow2 image that records changes over
base, which is never written; -i input copies input, converted to -f.
With -b or -i the size defaults to theirs and may only grow.
create vm writes configdir/vmname/config (default: the daemon's config
directory), a QEMU VM with comments on every line: -m memory, -p CPUs,
-d a disk image (repeatable), -r an ISO image, -k a kernel to boot
directly with -i its initrd and -a its command line, -n a network device
(repeatable): local (a private /31 with DHCP from the daemon), local:nat
(and NAT), bridge:NAME (a tap the daemon puts on bridge NAME), tap:NAME
or user; -t a template file (a path, or a name under
configdir/templates/NAME.conf) that the config includes. The config is loaded before it is put in place; an existing
directory is never touched. The daemon picks the new VM up by itself.`,
	"completion": `bash: source <(vmstatedctl completion bash)
zsh:  source <(vmstatedctl completion zsh)`,
}

func cmdHelp(e *env, args []string) error {
	if len(args) == 0 {
		printHelp(e.stdout)
		return nil
	}
	c := findCmd(args[0])
	if c == nil || c.hidden {
		return usagef("unknown command %q", args[0])
	}
	printCmdHelp(e.stdout, c)
	return nil
}

// actionDone prints what the daemon said after an action.
func (e *env) actionDone(a api.Action, st api.Status) {
	if e.json() {
		writeJSON(e.stdout, st)
		return
	}
	fmt.Fprintf(e.stdout, "%s: %s requested; it is %s\n", st.Name, a, st.State)
}

func simpleAction(a api.Action) func(*env, []string) error {
	return func(e *env, args []string) error {
		fs := e.newFlags(string(a))
		pos, err := e.parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		st, err := e.client().Do(e.ctx, pos[0], a, nil)
		if err != nil {
			return err
		}
		e.actionDone(a, st)
		return nil
	}
}

func cmdStart(e *env, args []string) error {
	fs := e.newFlags("start")
	wait := fs.Bool("w", false, "wait until it runs")
	attach := fs.Bool("c", false, "attach to the console")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if *attach {
		if _, err := e.waitFor(name, goal{target: api.StateRunning}, func() error {
			_, err := e.client().Start(e.ctx, name)
			return err
		}); err != nil {
			return err
		}
		escape, _ := parseEscape(defaultEscape)
		return e.attachConsole(name, api.ConsoleOptions{Lines: -1}, escape)
	}
	if !*wait {
		st, err := e.client().Start(e.ctx, name)
		if err != nil {
			return err
		}
		e.actionDone(api.ActionStart, st)
		return nil
	}
	st, err := e.waitFor(name, goal{target: api.StateRunning}, func() error {
		_, err := e.client().Start(e.ctx, name)
		return err
	})
	return e.waited(st, err)
}

func cmdSuspend(e *env, args []string) error {
	fs := e.newFlags("suspend")
	nowait := fs.Bool("n", false, "do not wait")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if *nowait {
		st, err := e.client().Suspend(e.ctx, name, api.SuspendOptions{})
		if err != nil {
			return err
		}
		e.actionDone(api.ActionSuspend, st)
		return nil
	}
	st, err := e.waitFor(name, goal{target: api.StateSuspended}, func() error {
		_, err := e.client().Suspend(e.ctx, name, api.SuspendOptions{})
		return err
	})
	return e.waited(st, err)
}

func cmdRestart(e *env, args []string) error {
	fs := e.newFlags("restart")
	wait := fs.Bool("w", false, "wait until it runs again")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if !*wait {
		st, err := e.client().Do(e.ctx, name, api.ActionRestart, nil)
		if err != nil {
			return err
		}
		e.actionDone(api.ActionRestart, st)
		return nil
	}
	st, err := e.waitFor(name, goal{target: api.StateRunning, needMove: true}, func() error {
		_, err := e.client().Do(e.ctx, name, api.ActionRestart, nil)
		return err
	})
	return e.waited(st, err)
}

// waited prints the final status of a wait.
func (e *env) waited(st api.Status, err error) error {
	if err != nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, st)
	}
	return nil
}

func cmdStop(e *env, args []string) error {
	fs := e.newFlags("stop")
	force := fs.Bool("f", false, "kill at once")
	wait := fs.Bool("w", false, "wait until stopped")
	all := fs.Bool("a", false, "stop every VM")
	timeout := fs.Float64("t", 0, "graceful stop timeout in seconds")
	pos, err := e.parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if *timeout < 0 {
		return usagef("-t %v: want a number of seconds, 0 or more", *timeout)
	}
	opts := api.StopOptions{Force: *force, Timeout: *timeout}
	switch {
	case *all && len(pos) > 0:
		return usagef("-a stops every VM; name none")
	case *all:
		return e.stopAll(opts)
	case len(pos) == 0:
		return usagef("name a VM, or use -a for all ('vmstatedctl status' lists them)")
	}
	if err := e.oneHost(); err != nil {
		return err
	}
	name := pos[0]
	if err := e.stopDependants(name, opts); err != nil {
		return err
	}
	if !*wait {
		st, err := e.client().Stop(e.ctx, name, opts)
		if err != nil {
			return err
		}
		e.actionDone(api.ActionStop, st)
		return nil
	}
	st, err := e.waitFor(name, goal{target: api.StateStopped}, func() error {
		_, err := e.client().Stop(e.ctx, name, opts)
		return err
	})
	return e.waited(st, err)
}

// stopAll stops every VM the caller sees, in waves: a VM stops before
// every VM it depends on. Each wave is stopped in parallel and waited for
// before the next begins.
// With several hosts, it does so on each host in turn.
func (e *env) stopAll(opts api.StopOptions) error {
	all := []hostStatus{}
	err := e.eachHost(func(h *env, label string) error {
		if label != "" && !e.json() {
			h.stdout = &prefixWriter{w: e.stdout, prefix: label + " "}
		}
		results, err := h.stopAllOn(opts)
		for _, st := range results {
			all = append(all, hostStatus{Host: label, Status: st})
		}
		return err
	})
	if e.json() {
		if len(e.hosts) > 1 {
			writeJSON(e.stdout, all)
		} else {
			list := make([]api.Status, 0, len(all))
			for _, hs := range all {
				list = append(list, hs.Status)
			}
			writeJSON(e.stdout, list)
		}
	}
	return err
}

// stopAllOn stops every VM of the env's one daemon and returns the VMs it
// stopped, sorted by name.
func (e *env) stopAllOn(opts api.StopOptions) ([]api.Status, error) {
	list, err := e.client().List(e.ctx)
	if err != nil {
		return nil, err
	}
	results, err := e.stopInWaves(stopWaves(list, activeNames(list)), opts)
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	return results, err
}

// stopDependants stops, before name stops, the VMs that depend on it and
// are up or on their way up, as a service manager stops the units that
// need one first: leaving them running would pull the ground from under
// them without a word. It says so, and waits for them to stop.
func (e *env) stopDependants(name string, opts api.StopOptions) error {
	list, err := e.client().List(e.ctx)
	if err != nil {
		return err
	}
	deps := dependants(list, name)
	if len(deps) == 0 {
		return nil
	}
	if !e.json() {
		verb, them := "depends", "it"
		if len(deps) > 1 {
			verb, them = "depend", "them"
		}
		fmt.Fprintf(e.stdout, "%s: %s %s on it; stopping %s first\n", name, strings.Join(deps, ", "), verb, them)
	}
	if _, err := e.stopInWaves(stopWaves(list, deps), opts); err != nil {
		return fmt.Errorf("%s is not stopped, since what depends on it did not stop: %w", name, err)
	}
	return e.ctx.Err()
}

// dependants lists, sorted, the active VMs (see activeNames) that depend
// on name, directly or through other active ones: a VM that runs while
// what it depends on is already stopped loses nothing more.
func dependants(list []api.Status, name string) []string {
	active := make(map[string]bool)
	for _, n := range activeNames(list) {
		active[n] = true
	}
	seen := map[string]bool{name: true}
	var out []string
	queue := []string{name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, st := range list {
			if seen[st.Name] || !active[st.Name] || !slices.Contains(st.Depends, n) {
				continue
			}
			seen[st.Name] = true
			queue = append(queue, st.Name)
			out = append(out, st.Name)
		}
	}
	sort.Strings(out)
	return out
}

// waitsAtOnce bounds the VMs a stop of many follows at once: each wait
// holds an event stream, a connection of its own (over ssh, an ssh
// process), and a second one for the status it reads beside the stream;
// the daemon lets a user other than root hold only a few (vmstated -C, 64
// by default), and counts a closed connection until it has seen it
// closed. With 4, a cap of 8 was reached now and then.
const waitsAtOnce = 2

// stopInWaves stops each wave's VMs in parallel and waits for them before
// the next wave begins; it returns the statuses of those that stopped.
// Every VM of a wave is asked to stop before any is waited for, so that
// they all stop at once in the daemon however few are followed at a time.
func (e *env) stopInWaves(waves [][]string, opts api.StopOptions) ([]api.Status, error) {
	var (
		errs    []error
		results []api.Status
		mu      sync.Mutex
	)
	for _, wave := range waves {
		var asked []string
		forEachAtOnce(wave, waitsAtOnce, func(name string) {
			_, err := e.client().Stop(e.ctx, name, opts)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, api.ErrConflict) { // conflict: already on its way down, or not running
				errs = append(errs, err)
				return
			}
			asked = append(asked, name)
		})
		forEachAtOnce(asked, waitsAtOnce, func(name string) {
			st, err := e.waitFor(name, goal{target: api.StateStopped, quiet: e.json()}, nil)
			if errors.Is(err, api.ErrNotFound) {
				// Asked to stop and gone since: its directory was gone,
				// and the daemon dropped it as it came to rest.
				st, err = api.Status{Name: name, State: api.StateStopped, Desired: api.StateStopped}, nil
				if !e.json() {
					progressMu.Lock()
					fmt.Fprintf(e.stdout, "%s: %s (and dropped: its directory is gone)\n", name, st.State)
					progressMu.Unlock()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				results = append(results, st)
			}
		})
		if e.ctx.Err() != nil {
			break
		}
	}
	return results, errors.Join(errs...)
}

// forEachAtOnce calls fn for every name, n calls at a time.
func forEachAtOnce(names []string, n int, fn func(name string)) {
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < n && i < len(names); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				fn(name)
			}
		}()
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
}

// activeNames lists the VMs that are not at rest (stopped, failed or
// suspended). A stopped VM that waits for its dependencies to start (the
// status says what it waits for) counts as active:
// stopping it cancels that start, where leaving it would have it fail once
// the VMs it waits for are stopped.
func activeNames(list []api.Status) []string {
	var active []string
	for _, st := range list {
		waiting := st.State == api.StateStopped && len(st.WaitingFor) > 0
		if waiting || (st.State != api.StateStopped && st.State != api.StateFailed && st.State != api.StateSuspended) {
			active = append(active, st.Name)
		}
	}
	return active
}

// stopWaves groups names in waves: every VM comes in an earlier wave than
// the VMs it depends on.
func stopWaves(list []api.Status, names []string) [][]string {
	deps := make(map[string][]string, len(list))
	for _, st := range list {
		deps[st.Name] = st.Depends
	}
	return deporder.StopWaves(deps, names)
}

func cmdStatus(e *env, args []string) error {
	fs := e.newFlags("status")
	runningOnly := fs.Bool("r", false, "only VMs whose hypervisor is up")
	pos, err := e.parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		if err := e.oneHost(); err != nil {
			return err
		}
		st, err := e.client().Get(e.ctx, pos[0])
		if err != nil {
			return err
		}
		if e.json() {
			writeJSON(e.stdout, st)
			return nil
		}
		printDetail(e.stdout, st, time.Now())
		return nil
	}
	rows := []hostStatus{}
	err = e.eachHost(func(h *env, label string) error {
		list, err := h.client().List(h.ctx)
		if err != nil {
			return err
		}
		for _, st := range list {
			if !*runningOnly || st.State.HypervisorUp() || st.State == api.StateRestarting {
				rows = append(rows, hostStatus{Host: label, Status: st})
			}
		}
		return nil
	})
	switch {
	case len(e.hosts) > 1 && e.json():
		writeJSON(e.stdout, rows)
	case len(e.hosts) > 1:
		printHostTable(e.stdout, rows, time.Now())
	case err != nil:
		return err
	case e.json():
		list := make([]api.Status, 0, len(rows))
		for _, r := range rows {
			list = append(list, r.Status)
		}
		writeJSON(e.stdout, list)
	default:
		list := make([]api.Status, 0, len(rows))
		for _, r := range rows {
			list = append(list, r.Status)
		}
		printTable(e.stdout, list, time.Now())
	}
	return err
}

func cmdWait(e *env, args []string) error {
	fs := e.newFlags("wait")
	timeout := fs.Float64("t", 0, "give up after this many seconds")
	pos, err := e.parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	g := goal{}
	if len(pos) == 2 {
		g.target = api.State(pos[1])
		if !g.target.Valid() {
			names := make([]string, len(api.States))
			for i, s := range api.States {
				names[i] = string(s)
			}
			return usagef("unknown state %q; states: %s", pos[1], strings.Join(names, ", "))
		}
	}
	if *timeout < 0 {
		return usagef("-t %v: want a number of seconds", *timeout)
	}
	if *timeout > 0 {
		ctx, cancel := context.WithTimeout(e.ctx, time.Duration(*timeout*float64(time.Second)))
		defer cancel()
		sub := *e
		sub.ctx = ctx
		st, err := sub.waitFor(pos[0], g, nil)
		if err != nil && ctx.Err() != nil && e.ctx.Err() == nil {
			what := "settled"
			if g.target != "" {
				what = "reached " + string(g.target)
			}
			cur, gerr := e.client().Get(e.ctx, pos[0])
			if gerr == nil {
				return fmt.Errorf("%s has not %s within %v seconds; it is %s", pos[0], what, *timeout, cur.State)
			}
			return fmt.Errorf("%s has not %s within %v seconds", pos[0], what, *timeout)
		}
		return e.waited(st, err)
	}
	st, err := e.waitFor(pos[0], g, nil)
	return e.waited(st, err)
}

func cmdScreenshot(e *env, args []string) error {
	fs := e.newFlags("screenshot")
	pos, err := e.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	name, file := pos[0], pos[1]
	var buf bytes.Buffer
	format, err := e.client().Screenshot(e.ctx, name, &buf)
	if err != nil {
		return err
	}
	if file == "-" {
		_, err := e.stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(file, buf.Bytes()); err != nil {
		return fmt.Errorf("saving the screenshot of %s: %w", name, err)
	}
	if e.json() {
		writeJSON(e.stdout, map[string]any{"vm": name, "file": file, "format": format, "bytes": buf.Len()})
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: %s screenshot saved to %s (%d bytes)\n", name, format, file, buf.Len())
	return nil
}

// writeFileAtomic writes through a temporary file so an interrupted write
// never leaves half an image under the name.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, atomicfile.Options{Mode: 0o644})
}

func cmdInfo(e *env, args []string) error {
	fs := e.newFlags("info")
	all := fs.Bool("a", false, "every detail")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	info, err := e.client().Info(e.ctx, pos[0])
	if err != nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, info)
		return nil
	}
	if *all || !printInfoSummary(e.stdout, info) {
		printInfo(e.stdout, info)
	}
	return nil
}

func cmdLog(e *env, args []string) error {
	fs := e.newFlags("log")
	follow := fs.Bool("f", false, "follow new lines")
	lines := fs.Int("n", 0, "only the last lines")
	pos, err := e.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *lines < 0 {
		return usagef("-n %d: want a number of lines", *lines)
	}
	// Without -n the whole log; -n 0 asks for none of it (with -f: only
	// the lines written from now on). The client says "none" with -1.
	opts := api.LogOptions{Lines: *lines, Follow: *follow}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "n" && *lines == 0 {
			opts.Lines = -1
		}
	})
	rd, err := e.client().Log(e.ctx, pos[0], opts)
	if err != nil {
		return err
	}
	defer rd.Close()
	if !e.json() {
		_, err = io.Copy(e.stdout, rd)
		if err != nil && e.ctx.Err() != nil {
			return nil // interrupted while following
		}
		return err
	}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		writeJSON(e.stdout, map[string]string{"vm": pos[0], "line": sc.Text()})
	}
	if err := sc.Err(); err != nil && e.ctx.Err() == nil {
		return err
	}
	return nil
}

func cmdEvents(e *env, args []string) error {
	fs := e.newFlags("events")
	after := fs.Uint64("after", 0, "resume after this sequence number")
	pos, err := e.parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	opts := api.EventOptions{After: *after}
	fs.Visit(func(f *flag.Flag) { opts.Replay = opts.Replay || f.Name == "after" })
	if len(pos) == 1 {
		opts.VM = pos[0]
	}
	if len(e.hosts) < 2 {
		return e.followEvents(opts, "")
	}
	// Several hosts: all streams at once, each line with its host.
	out := &lockedWriter{w: e.stdout}
	errs := make(chan error, len(e.hosts))
	for _, host := range e.hosts {
		h := e.perHost(host)
		h.stdout = out
		go func() {
			err := h.followEvents(opts, host)
			h.client().Close()
			if err != nil {
				err = hostError{host: host, err: err}
			}
			errs <- err
		}()
	}
	var all []error
	for range e.hosts {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// followEvents prints the events of the env's one daemon until the
// context ends; host, when set, starts each line (-o json: a "host" field).
func (e *env) followEvents(opts api.EventOptions, host string) error {
	s, err := e.client().Events(e.ctx, opts)
	if err != nil {
		return err
	}
	defer func() { s.Close() }()
	for {
		ev, err := s.Next()
		if err != nil {
			if e.ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, io.EOF) {
				return err
			}
			// The daemon ended the stream (this reader fell behind, or
			// the daemon exits): resume where it stopped. The lost
			// notice already told of any gap.
			s.Close()
			opts.After = s.Last
			next, err := e.client().Events(e.ctx, opts)
			if err != nil {
				if e.ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("the event stream ended after %d: %w", opts.After, err)
			}
			s = next
			continue
		}
		switch {
		case e.json() && host != "":
			writeJSON(e.stdout, hostEvent{Host: host, Event: ev})
		case e.json():
			writeJSON(e.stdout, ev)
		case ev.Kind == api.KindHook && ev.Skipped:
			// A state without a hook: nothing happened worth a line.
		case host != "":
			fmt.Fprintln(e.stdout, host+" "+formatEvent(ev))
		default:
			fmt.Fprintln(e.stdout, formatEvent(ev))
		}
	}
}

func cmdReload(e *env, args []string) error {
	fs := e.newFlags("reload")
	if _, err := e.parse(fs, args, 0, 0); err != nil {
		return err
	}
	res, err := e.client().Reload(e.ctx)
	if err != nil {
		return err
	}
	if e.json() {
		writeJSON(e.stdout, res)
	} else {
		printReload(e.stdout, res)
	}
	if n := len(res.Invalid); n > 0 {
		return fmt.Errorf("%d VM config(s) did not load; each keeps the config it had (fix the file, then reload again)", n)
	}
	return nil
}

// printReload says what a reload changed, one line per kind of change.
func printReload(w io.Writer, res api.ReloadResult) {
	said := false
	for _, k := range []struct {
		what  string
		names []string
	}{{"added", res.Added}, {"changed", res.Changed}, {"removed", res.Removed}} {
		if len(k.names) > 0 {
			fmt.Fprintf(w, "%s: %s\n", k.what, strings.Join(k.names, ", "))
			said = true
		}
	}
	names := make([]string, 0, len(res.Invalid))
	for n := range res.Invalid {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "invalid: %s: %s\n", n, oneLine(res.Invalid[n]))
		said = true
	}
	if !said {
		fmt.Fprintln(w, "no config changed")
	}
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
