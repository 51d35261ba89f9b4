package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmstated/vmstated/api"
)

// qemuBinary is the emulator scenario 5 runs.
const qemuBinary = "qemu-system-x86_64"

// libvirtHowTo says how to make the libvirt comparison run.
const libvirtHowTo = "apt-get install -y libvirt-daemon-system libvirt-clients; then, without systemd: virtlogd -d; libvirtd -d"

// qemu is scenario 5: diskless TCG VMs, start → running and forced stop →
// stopped, against the same QEMU started bare by a minimal QMP client (the
// floor), and the daemon's memory with them running.
func (s *Suite) qemu(ctx context.Context) error {
	n := s.opt.QEMUVMs
	scen := fmt.Sprintf("5. QEMU, %d diskless TCG VMs", n)
	qbin, err := exec.LookPath(qemuBinary)
	if n == 0 || err != nil {
		reason := "not asked for"
		if err != nil {
			reason = qemuBinary + " not installed (apt-get install -y --no-install-recommends qemu-system-x86)"
		}
		s.Report.Skipped = append(s.Report.Skipped, "scenario 5 (QEMU): "+reason)
		return nil
	}
	libvirtWhyNot := "not asked for (the short run leaves libvirt alone)"
	if s.opt.Libvirt {
		libvirtWhyNot = libvirtUsable(ctx)
	}
	if libvirtWhyNot != "" {
		s.Report.Skipped = append(s.Report.Skipped, "scenario 5, libvirt side: "+libvirtWhyNot)
	}
	root := filepath.Join(s.tmp, "qemu")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("q%02d", i)
		cfg := fmt.Sprintf("%s {\n  hypervisor = qemu;\n  memory = 64;\n  stop_timeout = 5;\n  qemu { accel = tcg; machine = q35; }\n}\n", names[i])
		if err := writeFile(filepath.Join(root, names[i], "config"), cfg, 0o644); err != nil {
			return err
		}
	}
	d, _, err := s.startDaemon(ctx, "qemu", root, n)
	if err != nil {
		return err
	}
	defer d.close(ctx)
	rounds := min(s.opt.Rounds, 3)
	var start, stop, refStart, refStop Sample
	var startRatio, stopRatio, rss floats
	for r := 0; r < rounds; r++ {
		var rs, rp Sample
		for _, name := range names {
			t, err := s.timedAction(ctx, d, name, api.ActionStart, "running")
			if err != nil {
				return err
			}
			rs = append(rs, t)
		}
		if kb, err := rssKB(d.pid()); err == nil {
			rss = append(rss, float64(kb)/1024)
		}
		for _, name := range names {
			ch := d.events.expect(name, "stopped", "failed")
			t0 := time.Now()
			if _, err := d.client.Stop(ctx, name, api.StopOptions{Force: true}); err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
			t1, err := waitState(ctx, ch, time.Minute, name, "stopped")
			if err != nil {
				return err
			}
			rp = append(rp, t1.Sub(t0))
		}
		var qs, qp Sample
		for i := 0; i < n; i++ {
			a, b, err := s.bareQEMU(ctx, qbin, i)
			if err != nil {
				return fmt.Errorf("bare QEMU reference: %w", err)
			}
			qs, qp = append(qs, a), append(qp, b)
		}
		start, stop = append(start, rs...), append(stop, rp...)
		refStart, refStop = append(refStart, qs...), append(refStop, qp...)
		startRatio = append(startRatio, float64(rs.Median())/float64(qs.Median()))
		stopRatio = append(stopRatio, float64(rp.Median())/float64(qp.Median()))
		s.logf("   round %d: start %.1f ms (bare %.1f ms), forced stop %.1f ms (bare %.1f ms)", r+1,
			ms(rs.Median()), ms(qs.Median()), ms(rp.Median()), ms(qp.Median()))
	}
	rep := &s.Report
	row := latencyRow(scen, "start → running (QMP up)", start, refStart, startRatio, 0)
	row.Reference += " (bare QEMU + QMP)"
	rep.add(row)
	row = latencyRow(scen, "forced stop → stopped", stop, refStop, stopRatio, 0)
	row.Reference += " (bare SIGKILL + wait)"
	rep.add(row)
	if libvirtWhyNot != "" {
		rep.add(Row{scen, fmt.Sprintf("daemon RSS, %d running", n), spreadF(rss, "MiB", 1), "—", "—", "≤ 1/3 of libvirtd", "libvirt skipped"})
		rep.add(Row{scen, "start vs libvirt", "—", "—", "—", "≤ 0.5× libvirt", "libvirt skipped"})
		return nil
	}
	return s.cliComparison(ctx, d, qbin, names, rounds)
}

// bareQEMU starts the diskless VM by hand and times exec → QMP says
// running, then SIGKILL → reaped.
func (s *Suite) bareQEMU(ctx context.Context, qbin string, i int) (start, stop time.Duration, err error) {
	dir, err := os.MkdirTemp(s.tmp, "bareqemu-")
	if err != nil {
		return 0, 0, err
	}
	sock := filepath.Join(dir, "qmp")
	cmd := exec.Command(qbin, "-machine", "q35,accel=tcg", "-m", "64", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off", "-name", fmt.Sprintf("bare%d", i))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	s.trackCmd(cmd)
	defer func() {
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var conn net.Conn
	for {
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return 0, 0, fmt.Errorf("QMP socket never came up: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	rd := bufio.NewReader(conn)
	if _, err := rd.ReadString('\n'); err != nil { // greeting
		return 0, 0, err
	}
	if _, err := qmpCall(conn, rd, `{"execute":"qmp_capabilities"}`); err != nil {
		return 0, 0, err
	}
	ret, err := qmpCall(conn, rd, `{"execute":"query-status"}`)
	if err != nil {
		return 0, 0, err
	}
	if !strings.Contains(ret, `"running"`) {
		return 0, 0, fmt.Errorf("query-status said %s", ret)
	}
	start = time.Since(t0)
	t1 := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		return 0, 0, err
	}
	_ = cmd.Wait()
	return start, time.Since(t1), nil
}

// qmpCall sends one command and returns its reply line, skipping events.
func qmpCall(conn net.Conn, rd *bufio.Reader, cmd string) (string, error) {
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		return "", err
	}
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return "", err
		}
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if e, ok := m["error"]; ok {
			return "", fmt.Errorf("QMP error: %s", e)
		}
		if _, ok := m["return"]; ok {
			return line, nil
		}
	}
}
