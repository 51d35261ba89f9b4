package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vmstated/vmstated/api"
)

// crashSleepMS is how long each incarnation of the crashing VM lives.
const crashSleepMS = 50

// crash is scenario 3: a VM process that crashes every crashSleepMS; the
// time from its exit (stamped by the process itself just before exiting)
// to its restarting hook starting (stamped by the hook's first
// statement). The reference is a bare Go parent that waits for the same
// process and then runs the same hook at once: the floor any supervisor
// written this way has.
//
// Scenario 4 (reload) shares the daemon: its VM sits stopped beside.
func (s *Suite) crash(ctx context.Context) error {
	root := filepath.Join(s.tmp, "crash")
	dir := filepath.Join(root, "crash")
	exits := filepath.Join(dir, "exit.stamps")
	cmdline := []string{s.bin("vmbench"), SleeperArg, strconv.Itoa(crashSleepMS), exits, "3"}
	extra := "  maxrestart = 1000;\n  maxrestarttime = 1;\n  on_crash = restart;\n"
	if err := writeFile(filepath.Join(dir, "config"), vmConfig("crash", cmdline, extra), 0o644); err != nil {
		return err
	}
	if err := os.Symlink(s.bin("vmbench"), filepath.Join(dir, stampHook)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(root, "reload", "config"), reloadConfig("rev-0"), 0o644); err != nil {
		return err
	}
	d, _, err := s.startDaemon(ctx, "crash", root, 2)
	if err != nil {
		return err
	}
	defer d.close(ctx)

	n := s.opt.Crashes
	var daemonS, refS Sample
	if _, err := d.client.Start(ctx, "crash"); err != nil {
		return err
	}
	hooks := filepath.Join(dir, StampFile)
	deadline := time.Now().Add(time.Duration(n)*time.Second + time.Minute)
	for {
		st, _ := readStamps(hooks)
		if len(st) >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d restarting hooks ran; see %s", len(st), n, d.dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := d.client.Stop(ctx, "crash", api.StopOptions{Force: true}); err != nil {
		return err
	}
	if daemonS, err = pairStamps(exits, hooks); err != nil {
		return err
	}

	// The reference: wait for the process, run the hook.
	ref := filepath.Join(s.tmp, "crash-ref")
	if err := os.MkdirAll(ref, 0o755); err != nil {
		return err
	}
	hookPath := filepath.Join(ref, stampHook)
	if err := os.Symlink(s.bin("vmbench"), hookPath); err != nil {
		return err
	}
	refExits := filepath.Join(ref, "exit.stamps")
	for i := 0; i < n; i++ {
		p := exec.CommandContext(ctx, s.bin("vmbench"), SleeperArg, strconv.Itoa(crashSleepMS), refExits, "3")
		p.Dir = ref
		if err := p.Start(); err != nil {
			return err
		}
		_ = p.Wait() // exits 3 on purpose
		h := exec.CommandContext(ctx, hookPath, "crash", stampHook)
		h.Dir = ref
		h.Env = append(cleanEnv(), "VMSTATED_CONFIG_DIR="+ref)
		if err := h.Run(); err != nil {
			return fmt.Errorf("reference hook: %w", err)
		}
	}
	if refS, err = pairStamps(refExits, filepath.Join(ref, StampFile)); err != nil {
		return err
	}
	rep := &s.Report
	rep.Crash = map[string]Sample{"vmstated": daemonS, "wait+exec": refS}
	rep.add(latencyRow("3. crash detection", "process exit → restarting hook starts", daemonS, refS, nil, 0))
	rep.Rows[len(rep.Rows)-1].Target = "< 10 ms median"
	rep.Rows[len(rep.Rows)-1].Verdict = verdict(daemonS.Median() < 10*time.Millisecond)
	s.logf("   crash: %.2f ms (reference %.2f ms)", ms(daemonS.Median()), ms(refS.Median()))

	return s.reloadOn(ctx, d, filepath.Join(root, "reload", "config"))
}

// pairStamps pairs the i-th exit with the i-th hook start.
func pairStamps(exitFile, hookFile string) (Sample, error) {
	ex, err := readStamps(exitFile)
	if err != nil {
		return nil, err
	}
	hk, err := readStamps(hookFile)
	if err != nil {
		return nil, err
	}
	n := min(len(ex), len(hk))
	if n == 0 {
		return nil, fmt.Errorf("no exit/hook stamp pairs in %s and %s", exitFile, hookFile)
	}
	out := make(Sample, n)
	for i := 0; i < n; i++ {
		out[i] = hk[i].Sub(ex[i])
	}
	return out, nil
}

func reloadConfig(desc string) string {
	return fmt.Sprintf("reload {\n  hypervisor = exec;\n  description = %q;\n  exec { command = [ \"/bin/sleep\", \"86400\" ]; }\n}\n", desc)
}

// reloadOn is scenario 4: the time from writing a stopped VM's config file
// to the status showing the change. It waits for the daemon's config event
// (no polling until then), then reads the status.
func (s *Suite) reloadOn(ctx context.Context, d *daemon, path string) error {
	var smp, ev Sample
	for i := 1; i <= s.opt.Reloads; i++ {
		desc := fmt.Sprintf("rev-%d", i)
		ch := d.events.expect("reload", "config")
		t0 := time.Now()
		if err := os.WriteFile(path, []byte(reloadConfig(desc)), 0o644); err != nil {
			return err
		}
		te, err := wait(ctx, ch, 10*time.Second, "config event of reload")
		if err != nil {
			return err
		}
		ev = append(ev, te.t.Sub(t0))
		for {
			st, err := d.client.Get(ctx, "reload")
			if err != nil {
				return err
			}
			if st.Description == desc {
				smp = append(smp, time.Since(t0))
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("status of reload still says %q, not %q", st.Description, desc)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Report.add(Row{"4. reload", "config write → status shows it", sampleSummary(smp),
		sampleSummary(ev) + " (config event)", "—", "< 300 ms", verdict(smp.Median() < 300*time.Millisecond)})
	s.logf("   reload: %.1f ms", ms(smp.Median()))
	return nil
}
