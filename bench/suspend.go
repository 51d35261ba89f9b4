package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/api"
	"github.com/vmstated/vmstated/hypervisor/qemu/qmp"
)

// suspendMemoryMB is the guest memory of the suspend scenario.
const suspendMemoryMB = 128

// suspend is scenario 6: a diskless TCG VM suspended (suspend → suspended:
// hooks, pause, the save, QEMU's end, the teardown) and resumed (start of
// a suspended VM → running: QEMU restored from the file), against the
// same QEMU saved and restored bare by a QMP client (stop, getfd, migrate
// to the file, quit; -incoming defer, migrate-incoming, cont).
func (s *Suite) suspend(ctx context.Context) error {
	scen := fmt.Sprintf("6. suspend, diskless TCG VM of %d MiB", suspendMemoryMB)
	qbin, err := exec.LookPath(qemuBinary)
	if err != nil {
		s.Report.Skipped = append(s.Report.Skipped, "scenario 6 (suspend): "+qemuBinary+" not installed")
		return nil
	}
	root := filepath.Join(s.tmp, "suspend")
	name := "s00"
	cfg := fmt.Sprintf("%s {\n  hypervisor = qemu;\n  memory = %d;\n  stop_timeout = 5;\n  qemu { accel = tcg; machine = q35; serial = false; }\n}\n", name, suspendMemoryMB)
	if err := writeFile(filepath.Join(root, name, "config"), cfg, 0o644); err != nil {
		return err
	}
	d, _, err := s.startDaemon(ctx, "suspend", root, 1)
	if err != nil {
		return err
	}
	defer d.close(ctx)
	if _, err := s.timedAction(ctx, d, name, api.ActionStart, "running"); err != nil {
		return err
	}
	rounds := max(s.opt.Rounds, 3)
	var save, restore, refSave, refRestore Sample
	for r := 0; r < rounds; r++ {
		ts, err := s.timedAction(ctx, d, name, api.ActionSuspend, "suspended")
		if err != nil {
			return err
		}
		tr, err := s.timedAction(ctx, d, name, api.ActionStart, "running")
		if err != nil {
			return err
		}
		bs, br, err := s.bareSuspend(ctx, qbin, r)
		if err != nil {
			return fmt.Errorf("bare QEMU reference: %w", err)
		}
		save, restore = append(save, ts), append(restore, tr)
		refSave, refRestore = append(refSave, bs), append(refRestore, br)
		s.logf("   round %d: suspend %.1f ms (bare %.1f ms), resume %.1f ms (bare %.1f ms)", r+1,
			ms(ts), ms(bs), ms(tr), ms(br))
	}
	if _, err := d.client.Stop(ctx, name, api.StopOptions{Force: true}); err != nil {
		return err
	}
	row := latencyRow(scen, "suspend → suspended", save, refSave, nil, 0)
	row.Reference += " (bare stop+migrate+quit)"
	s.Report.add(row)
	row = latencyRow(scen, "start of suspended → running", restore, refRestore, nil, 0)
	row.Reference += " (bare -incoming+cont)"
	s.Report.add(row)
	return nil
}

// bareSuspend starts the same VM by hand, saves it to a file through QMP
// (timed from the stop to QEMU's exit) and restores it (timed from exec
// to running).
func (s *Suite) bareSuspend(ctx context.Context, qbin string, i int) (save, restore time.Duration, err error) {
	dir, err := os.MkdirTemp(s.tmp, "baresusp-")
	if err != nil {
		return 0, 0, err
	}
	file := filepath.Join(dir, "guest.save")
	launch := func(extra ...string) (*exec.Cmd, *qmp.Client, error) {
		sock := filepath.Join(dir, fmt.Sprintf("qmp%d", time.Now().UnixNano()))
		args := append([]string{"-machine", "q35,accel=tcg", "-m", fmt.Sprint(suspendMemoryMB), "-nodefaults", "-display", "none",
			"-qmp", "unix:" + sock + ",server=on,wait=off", "-name", fmt.Sprintf("baresusp%d", i)}, extra...)
		cmd := exec.Command(qbin, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		s.trackCmd(cmd)
		for t0 := time.Now(); ; time.Sleep(time.Millisecond) {
			c, err := qmp.Dial(ctx, sock)
			if err == nil {
				return cmd, c, nil
			}
			if time.Since(t0) > 30*time.Second {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return nil, nil, fmt.Errorf("QMP socket never came up: %w", err)
			}
		}
	}
	migrated := func(c *qmp.Client) error {
		for {
			var st struct {
				Status    string `json:"status"`
				ErrorDesc string `json:"error-desc"`
			}
			if err := c.Run(ctx, "query-migrate", nil, &st); err != nil {
				return err
			}
			switch st.Status {
			case "completed":
				return nil
			case "failed", "cancelled":
				return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
			}
			time.Sleep(time.Millisecond)
		}
	}

	cmd, c, err := launch()
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	err = c.Run(ctx, "stop", nil, nil)
	if err == nil {
		err = c.Run(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil)
	}
	if err == nil {
		_, err = c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "save"}, f)
	}
	if err == nil {
		err = c.Run(ctx, "migrate", map[string]string{"uri": "fd:save"}, nil)
	}
	if err == nil {
		err = migrated(c)
	}
	f.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, 0, err
	}
	_ = c.Run(ctx, "quit", nil, nil)
	_ = cmd.Wait()
	c.Close()
	save = time.Since(t0)

	f, err = os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	t1 := time.Now()
	cmd, c, err = launch("-incoming", "defer")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		c.Close()
	}()
	if _, err := c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "load"}, f); err != nil {
		return 0, 0, err
	}
	if err := c.Run(ctx, "migrate-incoming", map[string]string{"uri": "fd:load"}, nil); err != nil {
		return 0, 0, err
	}
	if err := migrated(c); err != nil {
		return 0, 0, err
	}
	if err := c.Run(ctx, "cont", nil, nil); err != nil {
		return 0, 0, err
	}
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := c.Run(ctx, "query-status", nil, &st); err != nil {
			return 0, 0, err
		}
		if st.Status == "running" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return save, time.Since(t1), nil
}
