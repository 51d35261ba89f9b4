package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmstated/vmstated/api"
)

// sleeperCmd is the VM process of the exec scenarios.
var sleeperCmd = []string{"/bin/sleep", "86400"}

// baselineScript does by hand what the daemon does for a VM with four
// hooks: on "start", run start_network and start_storage, then spawn the
// sleeper; on "stop", kill it, wait for it, run stop_storage and
// stop_network. One shell reads the commands from stdin and answers "ok",
// so the reference pays no shell start-up per step, as the daemon pays no
// process start-up per request.
const baselineScript = `while read -r cmd dir name; do
  case $cmd in
  start)
    "$dir/start_network" "$name" start_network </dev/null &&
    "$dir/start_storage" "$name" start_storage </dev/null &&
    { /bin/sleep 86400 </dev/null >/dev/null 2>&1 & eval "pid_$name=\$!"; }
    echo ok ;;
  stop)
    eval "p=\$pid_$name"
    kill "$p"; wait "$p" 2>/dev/null
    "$dir/stop_storage" "$name" stop_storage </dev/null
    "$dir/stop_network" "$name" stop_network </dev/null
    echo ok ;;
  esac
done
`

// baseline is the shell above as a co-process.
type baseline struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (s *Suite) startBaseline() (*baseline, error) {
	cmd := exec.Command("/bin/sh", "-c", baselineScript)
	cmd.Env = cleanEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.trackCmd(cmd)
	return &baseline{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// step sends one command and times it to the answer.
func (b *baseline) step(cmd, dir, name string) (time.Duration, error) {
	t0 := time.Now()
	if _, err := fmt.Fprintf(b.in, "%s %s %s\n", cmd, dir, name); err != nil {
		return 0, err
	}
	line, err := b.out.ReadString('\n')
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("baseline shell: %w", err)
	}
	if strings.TrimSpace(line) != "ok" {
		return 0, fmt.Errorf("baseline shell said %q", line)
	}
	return d, nil
}

func (b *baseline) close() {
	_ = b.in.Close()
	_ = b.cmd.Wait()
}

// lifecycle is scenario 1: start->running and stop->stopped of VMs with
// four no-op hooks, one VM at a time, against the baseline shell.
func (s *Suite) lifecycle(ctx context.Context) error {
	n := s.opt.LifecycleVMs
	root := filepath.Join(s.tmp, "lifecycle")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("vm%03d", i)
		dir := filepath.Join(root, names[i])
		if err := writeFile(filepath.Join(dir, "config"), vmConfig(names[i], sleeperCmd, ""), 0o644); err != nil {
			return err
		}
		for _, h := range lifecycleHooks {
			if err := writeFile(filepath.Join(dir, h), noopHook, 0o755); err != nil {
				return err
			}
		}
	}
	d, _, err := s.startDaemon(ctx, "lifecycle", root, n)
	if err != nil {
		return err
	}
	defer d.close(ctx)
	b, err := s.startBaseline()
	if err != nil {
		return err
	}
	defer b.close()

	var all [4]Sample // daemon start, baseline start, daemon stop, baseline stop
	var startRatio, stopRatio floats
	for r := 0; r < s.opt.Rounds; r++ {
		var round [4]Sample
		for _, name := range names {
			t, err := s.timedAction(ctx, d, name, api.ActionStart, "running")
			if err != nil {
				return err
			}
			round[0] = append(round[0], t)
		}
		for _, name := range names {
			t, err := s.timedAction(ctx, d, name, api.ActionStop, "stopped")
			if err != nil {
				return err
			}
			round[2] = append(round[2], t)
		}
		for _, name := range names {
			t, err := b.step("start", filepath.Join(root, name), name)
			if err != nil {
				return err
			}
			round[1] = append(round[1], t)
		}
		for _, name := range names {
			t, err := b.step("stop", filepath.Join(root, name), name)
			if err != nil {
				return err
			}
			round[3] = append(round[3], t)
		}
		for i := range all {
			all[i] = append(all[i], round[i]...)
		}
		startRatio = append(startRatio, float64(round[0].Median())/float64(round[1].Median()))
		stopRatio = append(stopRatio, float64(round[2].Median())/float64(round[3].Median()))
		s.logf("   round %d: start %.2f ms vs %.2f ms, stop %.2f ms vs %.2f ms", r+1,
			ms(round[0].Median()), ms(round[1].Median()), ms(round[2].Median()), ms(round[3].Median()))
	}
	rep := &s.Report
	rep.Lifecycle = map[string]Sample{
		"vmstated start": all[0], "shell start": all[1],
		"vmstated stop": all[2], "shell stop": all[3],
	}
	scen := fmt.Sprintf("1. lifecycle, %d VMs × 4 hooks", n)
	rep.add(latencyRow(scen, "start → running", all[0], all[1], startRatio, 1.2))
	rep.add(latencyRow(scen, "stop → stopped", all[2], all[3], stopRatio, 1.2))
	return nil
}

// timedAction asks for an action and times it to the VM's event of
// entering state, as read from the event stream.
func (s *Suite) timedAction(ctx context.Context, d *daemon, name string, a api.Action, state string) (time.Duration, error) {
	ch := d.events.expect(name, state, "failed")
	t0 := time.Now()
	var err error
	if a == api.ActionStop {
		_, err = d.client.Stop(ctx, name, api.StopOptions{})
	} else {
		_, err = d.client.Do(ctx, name, a, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", a, name, err)
	}
	t1, err := waitState(ctx, ch, time.Minute, name, state)
	if err != nil {
		return 0, err
	}
	return t1.Sub(t0), nil
}
