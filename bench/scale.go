package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmstated/vmstated/api"
)

// scaleScript is the reference of "start all" and "stop all": one shell
// spawning the same number of sleepers, then killing and waiting for them.
const scaleScript = `while read -r cmd n; do
  case $cmd in
  start)
    i=0; pids=
    while [ $i -lt $n ]; do /bin/sleep 86400 </dev/null >/dev/null 2>&1 & pids="$pids $!"; i=$((i+1)); done
    echo ok ;;
  stop)
    kill $pids; wait $pids 2>/dev/null; pids=
    echo ok ;;
  esac
done
`

// scale is scenario 2: many VM directories (no hooks), the daemon's start,
// start all, stop all, its memory, status of all, the cost of a scrape of
// /metrics and idle CPU between scrapes.
func (s *Suite) scale(ctx context.Context) error {
	n := s.opt.ScaleVMs
	root := filepath.Join(s.tmp, "scale")
	empty := filepath.Join(s.tmp, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		return err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("s%04d", i)
		if err := writeFile(filepath.Join(root, names[i], "config"), vmConfig(names[i], sleeperCmd, ""), 0o644); err != nil {
			return err
		}
	}
	var (
		load, loadRef                     floats // ms
		startAll, stopAll, startRef, stop floats // s
		firstStart                        floats // s: round 1, files made
		rss, rssEmpty                     floats // MiB
		status, statusRef, ctl, ctlRef    Sample
		idleCPU                           floats // % of a core
		idleTicks                         float64
		scrape, scrapeRef                 Sample
		scrapeCPU, scrapeCPURef           floats // ms of daemon CPU per scrape
		scrapeLast, scrapeLastRef         scrapeCost
		startFailures                     int
		failReason                        string
	)
	// Every round's daemon keeps the state and log directories of the
	// rounds before, as a host's daemon does across restarts: the first
	// round starts VMs that never ran (their records and logs are made
	// then), the others VMs that ran before.
	home, err := os.MkdirTemp(s.tmp, "scale-")
	if err != nil {
		return err
	}
	for r := 0; r < s.opt.ScaleRounds; r++ {
		// The reference daemon: same binary, empty config root.
		de, t, err := s.startDaemon(ctx, "empty", empty, 0)
		if err != nil {
			return err
		}
		loadRef = append(loadRef, ms(t))
		if kb, err := rssKB(de.pid()); err == nil {
			rssEmpty = append(rssEmpty, float64(kb)/1024)
		}
		if err := s.timeStatus(ctx, de, &statusRef, &ctlRef); err != nil {
			return err
		}
		c, err := s.timeScrapes(ctx, de, &scrapeRef)
		if err != nil {
			de.close(ctx)
			return err
		}
		scrapeCPURef, scrapeLastRef = append(scrapeCPURef, c.cpuMs), c
		de.close(ctx)

		d, t, err := s.startDaemonIn(ctx, "scale", home, root, n)
		if err != nil {
			return err
		}
		load = append(load, ms(t))
		wall, failed, err := s.allAction(ctx, d, names, api.ActionStart, "running")
		if err != nil {
			d.close(ctx)
			return err
		}
		if len(failed) > 0 {
			startFailures = max(startFailures, len(failed))
			for _, why := range failed {
				failReason = why
				break
			}
			s.logf("   %d of %d VMs failed to start, e.g.: %s", len(failed), n, failReason)
		}
		if r == 0 {
			firstStart = append(firstStart, wall.Seconds())
		} else {
			startAll = append(startAll, wall.Seconds())
		}
		time.Sleep(200 * time.Millisecond) // let start-up garbage be collected
		if kb, err := rssKB(d.pid()); err == nil {
			rss = append(rss, float64(kb)/1024)
		}
		if err := s.timeStatus(ctx, d, &status, &ctl); err != nil {
			d.close(ctx)
			return err
		}
		c, err = s.timeScrapes(ctx, d, &scrape)
		if err != nil {
			d.close(ctx)
			return err
		}
		scrapeCPU, scrapeLast = append(scrapeCPU, c.cpuMs), c
		if r == 0 {
			// The idle time follows the scrapes: what a scrape leaves
			// behind (garbage, a kept-alive connection) is in it, as
			// between two scrapes of a Prometheus server.
			cpu, err := idleCPUOf(ctx, d.pid(), s.opt.Idle)
			if err != nil {
				d.close(ctx)
				return err
			}
			idleCPU = append(idleCPU, cpu)
			idleTicks = cpu / 100 * s.opt.Idle.Seconds() * clockTick
		}
		up := make([]string, 0, n)
		for _, name := range names {
			if _, bad := failed[name]; !bad {
				up = append(up, name)
			}
		}
		wall, _, err = s.allAction(ctx, d, up, api.ActionStop, "stopped")
		if err != nil {
			d.close(ctx)
			return err
		}
		stopAll = append(stopAll, wall.Seconds())
		d.close(ctx)

		a, b, err := s.scaleReference(n)
		if err != nil {
			return err
		}
		startRef, stop = append(startRef, a.Seconds()), append(stop, b.Seconds())
		started := firstStart[0]
		if r > 0 {
			started = startAll[r-1]
		}
		s.logf("   round %d: load %.0f ms (empty %.0f ms), start all %.2f s (shell %.2f s), stop all %.2f s (shell %.2f s), RSS %.1f MiB",
			r+1, load[r], loadRef[r], started, startRef[r], stopAll[r], stop[r], rss[len(rss)-1])
	}
	rep := &s.Report
	scen := fmt.Sprintf("2. scale, %d VMs", n)
	if startFailures > 0 {
		rep.add(Row{scen, "VMs that failed to start", fmt.Sprintf("%d of %d", startFailures, n), "0 (shell)", "—",
			"0", "MISSED: " + failReason})
	}
	rep.add(Row{scen, "daemon start → all configs loaded", spreadF(load, "ms", 0), spreadF(loadRef, "ms", 0) + " (empty root)",
		ratioF(load, loadRef), "< 500 ms", verdict(load.median() < 500)})
	rep.add(Row{scen, "start all, first start ever (wall)", spreadF(firstStart, "s", 2), spreadF(startRef[:1], "s", 2) + " (shell)",
		ratioF(firstStart, startRef[:1]), "—", "reported"})
	if len(startAll) > 0 {
		rep.add(Row{scen, "start all, VMs that ran before (wall)", spreadF(startAll, "s", 2), spreadF(startRef[1:], "s", 2) + " (shell)",
			ratioF(startAll, startRef[1:]), "< 1.5 s", verdict(startAll.median() < 1.5)})
	}
	rep.add(Row{scen, "stop all (wall)", spreadF(stopAll, "s", 2), spreadF(stop, "s", 2) + " (shell)",
		ratioF(stopAll, stop), "< 1.5 s", verdict(stopAll.median() < 1.5)})
	rep.add(Row{scen, fmt.Sprintf("daemon RSS, %d running", n-startFailures), spreadF(rss, "MiB", 1), spreadF(rssEmpty, "MiB", 1) + " (no VMs)",
		ratioF(rss, rssEmpty), "≤ 60 MB", verdict(rss.median()*1.048576 <= 60)})
	rep.add(Row{scen, "status of all (GET /v1/vms)", sampleSummary(status), sampleSummary(statusRef) + " (no VMs)",
		fmt.Sprintf("%.2f", float64(status.Median())/float64(statusRef.Median())), "< 20 ms", verdict(status.Median() < 20*time.Millisecond)})
	rep.add(Row{scen, "`vmstatedctl status` (process included)", sampleSummary(ctl), sampleSummary(ctlRef) + " (no VMs)",
		fmt.Sprintf("%.2f", float64(ctl.Median())/float64(ctlRef.Median())), "—", "reported"})
	rep.add(Row{scen, fmt.Sprintf("GET /metrics, %d running (gzip)", n-startFailures), sampleSummary(scrape), sampleSummary(scrapeRef) + " (no VMs)",
		fmt.Sprintf("%.2f", float64(scrape.Median())/float64(scrapeRef.Median())), "—", "reported"})
	rep.add(Row{scen, "daemon CPU per scrape", spreadF(scrapeCPU, "ms", 1) + fmt.Sprintf("; %d samples, %d KiB gzipped", scrapeLast.series, scrapeLast.wire>>10),
		spreadF(scrapeCPURef, "ms", 1) + fmt.Sprintf(" (no VMs; %d samples)", scrapeLastRef.series), "—", "—", "reported"})
	rep.add(Row{scen, fmt.Sprintf("daemon CPU idle %v between scrapes, %d running", s.opt.Idle, n-startFailures),
		fmt.Sprintf("%.3f %% of a core (%.0f ticks)", idleCPU.median(), idleTicks),
		"—", "—", "< 0.5 %", verdict(idleCPU.median() < 0.5)})
	return nil
}

// timeStatus times listing every VM through the API (20 times) and through
// vmstatedctl (5 times).
func (s *Suite) timeStatus(ctx context.Context, d *daemon, api_, ctl *Sample) error {
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		if _, err := d.client.List(ctx); err != nil {
			return err
		}
		*api_ = append(*api_, time.Since(t0))
	}
	for i := 0; i < 5; i++ {
		cmd := exec.CommandContext(ctx, s.bin("vmstatedctl"), "-s", d.socket, "status")
		cmd.Env = cleanEnv()
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("vmstatedctl status: %v: %s", err, out)
		}
		*ctl = append(*ctl, time.Since(t0))
	}
	return nil
}

// allAction asks for a on every VM (a few requests in flight at once, as a
// script with xargs -P would) and returns the wall time until the last
// one reached state or failed, with the VMs that failed and why.
func (s *Suite) allAction(ctx context.Context, d *daemon, names []string, a api.Action, state string) (time.Duration, map[string]string, error) {
	chans := make([]<-chan hit, len(names))
	for i, n := range names {
		chans[i] = d.events.expect(n, state, "failed")
	}
	t0 := time.Now()
	work := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				var err error
				if a == api.ActionStop {
					_, err = d.client.Stop(ctx, name, api.StopOptions{})
				} else {
					_, err = d.client.Do(ctx, name, a, nil)
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("%s %s: %w", a, name, err):
					default:
					}
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, nil, err
	default:
	}
	failed := map[string]string{}
	deadline := t0.Add(5 * time.Minute)
	var last time.Time
	for i, ch := range chans {
		h, err := wait(ctx, ch, max(time.Until(deadline), time.Millisecond), fmt.Sprintf("%s %s", a, names[i]))
		if err != nil {
			if d.events.hadLoss() {
				wall, err := s.pollAll(ctx, d, state, t0)
				return wall, failed, err
			}
			return 0, nil, err
		}
		if h.state != state {
			failed[names[i]] = h.reason
		}
		if h.t.After(last) {
			last = h.t
		}
	}
	return last.Sub(t0), failed, nil
}

// pollAll waits by listing when the event stream lost events.
func (s *Suite) pollAll(ctx context.Context, d *daemon, state string, t0 time.Time) (time.Duration, error) {
	s.logf("   (event stream lost events; polling the status instead)")
	for time.Since(t0) < 5*time.Minute {
		vms, err := d.client.List(ctx)
		if err != nil {
			return 0, err
		}
		done := true
		for _, v := range vms {
			if string(v.State) != state {
				done = false
				break
			}
		}
		if done {
			return time.Since(t0), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("not all VMs reached %s within 5 minutes", state)
}

// scaleReference times the shell starting and stopping n sleepers.
func (s *Suite) scaleReference(n int) (start, stop time.Duration, err error) {
	cmd := exec.Command("/bin/sh", "-c", scaleScript)
	cmd.Env = cleanEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	s.trackCmd(cmd)
	b := &baseline{cmd: cmd, in: in, out: bufio.NewReader(out)}
	defer b.close()
	if start, err = b.step("start", fmt.Sprint(n), ""); err != nil {
		return 0, 0, err
	}
	if stop, err = b.step("stop", "", ""); err != nil {
		return 0, 0, err
	}
	return start, stop, nil
}

// idleCPUOf returns pid's CPU use over d, in percent of one core.
func idleCPUOf(ctx context.Context, pid int, d time.Duration) (float64, error) {
	a, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	b, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return 100 * (b.cpuSeconds() - a.cpuSeconds()) / time.Since(t0).Seconds(), nil
}
