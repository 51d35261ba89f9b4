package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// libvirtURI is the connection the comparison uses.
const libvirtURI = "qemu:///system"

// libvirtDomain is the domain of the comparison: the same diskless TCG
// machine as the vmstated side (q35, 64 MiB, no display, no disk).
const libvirtDomain = `<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>%s</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`

// virsh runs virsh against libvirtURI.
func virsh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-c", libvirtURI}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// libvirtUsable says why the comparison cannot run, or "".
func libvirtUsable(ctx context.Context) string {
	if _, err := exec.LookPath("virsh"); err != nil {
		return "virsh not installed (" + libvirtHowTo + ")"
	}
	if _, err := virsh(ctx, "version"); err != nil {
		return "libvirtd does not answer on " + libvirtURI + " (start it: virtlogd -d; libvirtd -d): " + firstLine(err.Error())
	}
	if libvirtdPID() == 0 {
		return "no libvirtd process found for its RSS"
	}
	return ""
}

// libvirtdPID finds the daemon that runs QEMU for libvirtURI.
func libvirtdPID() int {
	for _, name := range []string{"virtqemud", "libvirtd"} {
		for p := range parents() {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
			if err == nil && strings.TrimSpace(string(b)) == name {
				return p
			}
		}
	}
	return 0
}

// defineDomains defines one domain per name; the suite undefines them at
// cleanup.
func (s *Suite) defineDomains(ctx context.Context, qbin string, names []string) error {
	dir := filepath.Join(s.tmp, "libvirt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		// A leftover of an interrupted earlier run goes first.
		_, _ = virsh(ctx, "destroy", n)
		_, _ = virsh(ctx, "undefine", n)
		p := filepath.Join(dir, n+".xml")
		if err := os.WriteFile(p, []byte(fmt.Sprintf(libvirtDomain, n, qbin)), 0o644); err != nil {
			return err
		}
		if _, err := virsh(ctx, "define", p); err != nil {
			return err
		}
		s.mu.Lock()
		s.domains = append(s.domains, n)
		s.mu.Unlock()
	}
	return nil
}

// undefineDomains destroys and undefines the domains the suite defined.
func undefineDomains(names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range names {
		_, _ = virsh(ctx, "destroy", n)
		_, _ = virsh(ctx, "undefine", n)
	}
}

// timedCLI times one command line to its exit.
func timedCLI(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

// cliComparison runs the n VMs through both command-line tools, one at a
// time: vmstatedctl start -w / stop -f -w against virsh start / destroy,
// and reads both daemons' RSS with all n running.
func (s *Suite) cliComparison(ctx context.Context, d *daemon, qbin string, names []string, rounds int) error {
	scen := fmt.Sprintf("5. QEMU, %d diskless TCG VMs", len(names))
	doms := make([]string, len(names))
	for i, n := range names {
		doms[i] = "vmbench-" + n
	}
	if err := s.defineDomains(ctx, qbin, doms); err != nil {
		return err
	}
	ctl := s.bin("vmstatedctl")
	var ours, theirs, oursStop, theirsStop Sample
	var startRatio, stopRatio, rssOurs, rssTheirs floats
	for r := 0; r < rounds; r++ {
		var a, b, c, e Sample
		for _, n := range names {
			t, err := timedCLI(ctx, ctl, "-s", d.socket, "start", "-w", n)
			if err != nil {
				return err
			}
			a = append(a, t)
		}
		for _, n := range doms {
			t, err := timedCLI(ctx, "virsh", "-c", libvirtURI, "start", n)
			if err != nil {
				return err
			}
			b = append(b, t)
		}
		if kb, err := rssKB(d.pid()); err == nil {
			rssOurs = append(rssOurs, float64(kb)/1024)
		}
		if kb, err := rssKB(libvirtdPID()); err == nil {
			rssTheirs = append(rssTheirs, float64(kb)/1024)
		}
		for _, n := range names {
			t, err := timedCLI(ctx, ctl, "-s", d.socket, "stop", "-f", "-w", n)
			if err != nil {
				return err
			}
			c = append(c, t)
		}
		for _, n := range doms {
			t, err := timedCLI(ctx, "virsh", "-c", libvirtURI, "destroy", n)
			if err != nil {
				return err
			}
			e = append(e, t)
		}
		ours, theirs = append(ours, a...), append(theirs, b...)
		oursStop, theirsStop = append(oursStop, c...), append(theirsStop, e...)
		startRatio = append(startRatio, float64(a.Median())/float64(b.Median()))
		stopRatio = append(stopRatio, float64(c.Median())/float64(e.Median()))
		s.logf("   CLI round %d: vmstatedctl start -w %.0f ms, virsh start %.0f ms; stop -f -w %.0f ms, virsh destroy %.0f ms", r+1,
			ms(a.Median()), ms(b.Median()), ms(c.Median()), ms(e.Median()))
	}
	rep := &s.Report
	row := latencyRow(scen, "start, CLI: `vmstatedctl start -w` vs `virsh start`", ours, theirs, startRatio, 0)
	row.Target = "ratio ≤ 0.5"
	row.Verdict = verdict(startRatio.median() <= 0.5)
	rep.add(row)
	rep.add(latencyRow(scen, "forced stop, CLI: `vmstatedctl stop -f -w` vs `virsh destroy`", oursStop, theirsStop, stopRatio, 0))
	rep.add(Row{scen, fmt.Sprintf("daemon RSS, %d running: vmstated vs libvirtd", len(names)), spreadF(rssOurs, "MiB", 1),
		spreadF(rssTheirs, "MiB", 1) + " (libvirtd)", ratioF(rssOurs, rssTheirs), "ratio ≤ 0.33",
		verdict(ratioF(rssOurs, rssTheirs) != "no data" && rssOurs.median()/rssTheirs.median() <= 1.0/3)})
	return nil
}
