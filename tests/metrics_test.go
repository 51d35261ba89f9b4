//go:build linux

package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vmstated/vmstated/api"
)

// scrapeText is one GET /metrics over a unix socket.
func scrapeText(t *testing.T, socket string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, "http://vmstated/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	return string(b)
}

// scraped is one parsed scrape.
type scraped map[string]*dto.MetricFamily

func parseScrape(t *testing.T, text string) scraped {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, text)
	}
	return fams
}

func scrape(t *testing.T, socket string) scraped { return parseScrape(t, scrapeText(t, socket)) }

// value is the series of name whose labels include labels; ok is false
// when there is none.
func (s scraped) value(name string, labels ...string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (s scraped) histogram(name string, labels ...string) *dto.Histogram {
	if f := s[name]; f != nil {
		for _, m := range f.Metric {
			if hasLabels(m, labels) {
				return m.Histogram
			}
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// want checks that a series has a value.
func (s scraped) want(t *testing.T, what string, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := s.value(name, labels...)
	if !ok || got != want {
		t.Errorf("%s: %s%v = %v (present %v), want %v", what, name, labels, got, ok, want)
	}
}

// A VM whose process keeps crashing restarts up to its budget and then
// fails; the counters show each step.
func TestMetricsCrashLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("mcrash", execVM([]string{"/bin/sh", "-c", "exit 3"}, "")+"    maxrestart = 2;\n    maxrestarttime = 600;\n")
	d := e.start()

	before := scrape(t, e.socket)
	before.want(t, "before", 1, "vmstated_up")
	before.want(t, "before", 1, "vmstated_vm_state", "vm", vm, "state", "stopped")
	before.want(t, "before", 0, "vmstated_vm_state", "vm", vm, "state", "failed")
	before.want(t, "before", 0, "vmstated_vm_restarts_total", "vm", vm)
	before.want(t, "before", 0, "vmstated_vm_failures_total", "vm", vm)
	before.want(t, "before", 2, "vmstated_vm_maxrestart", "vm", vm)
	if _, ok := before.value("vmstated_vm_exits_total", "vm", vm); ok {
		t.Errorf("exits counted before the VM ran")
	}

	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateFailed, 1)
	d.waitState(vm, api.StateFailed)

	after := scrape(t, e.socket)
	after.want(t, "after the crash loop", 1, "vmstated_vm_state", "vm", vm, "state", "failed")
	after.want(t, "after the crash loop", 0, "vmstated_vm_state", "vm", vm, "state", "stopped")
	after.want(t, "after the crash loop", 1, "vmstated_vm_desired_state", "vm", vm, "state", "stopped")
	if _, ok := after.value("vmstated_vm_desired_state", "vm", vm, "state", "running"); ok {
		t.Errorf("a desired-state series for a state not asked for")
	}
	after.want(t, "after the crash loop", 2, "vmstated_vm_restarts_total", "vm", vm)
	after.want(t, "after the crash loop", 1, "vmstated_vm_failures_total", "vm", vm)
	after.want(t, "after the crash loop", 3, "vmstated_vm_exits_total", "vm", vm, "reason", "crash")
	after.want(t, "after the crash loop", 1, "vmstated_vm_hook_runs_total", "vm", vm, "state", "start_network")
	// The teardown after the budget ran out.
	after.want(t, "after the crash loop", 1, "vmstated_vm_hook_runs_total", "vm", vm, "state", "stop_storage")
	after.want(t, "after the crash loop", 1, "vmstated_vm_hook_runs_total", "vm", vm, "state", "stop_network")
	after.want(t, "after the crash loop", 0, "vmstated_vm_hook_failures_total", "vm", vm, "state", "start_network")
	after.want(t, "after the crash loop", 1, "vmstated_vm_hook_duration_seconds", "vm", vm, "state", "start_network")
	if got, _ := after.value("vmstated_vm_last_transition_timestamp_seconds", "vm", vm); got <= 0 {
		t.Errorf("last transition time %v", got)
	}
	if got, _ := after.value("vmstated_api_requests_total", "code", "200"); got < 2 {
		t.Errorf("API requests with 200: %v, want at least the two scrapes' and the start's", got)
	}
	// The restart loop left no stray process: none was scraped as running.
	if _, ok := after.value("libvirt_domain_info_cpu_time_seconds_total", "domain", vm); ok {
		t.Errorf("a failed VM has a CPU time series")
	}
}

// A hook that outlives hook_timeout counts as a run, a failure and a
// timeout of its state, with its duration in the histogram.
func TestMetricsHookTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("mhook", sleeper("    hook_timeout = 1;\n"))
	e.control(vm, "start_network", "hang", true)
	d := e.start()
	before := scrape(t, e.socket)
	if _, ok := before.value("vmstated_vm_hook_timeouts_total", "vm", vm, "state", "start_network"); ok {
		t.Errorf("a hook timeout before any hook ran")
	}
	ev := d.events(vm)
	d.do(vm, api.ActionStart)
	ev.waitEnter(t, api.StateFailed, 1)
	after := scrape(t, e.socket)
	after.want(t, "after the timeout", 1, "vmstated_vm_hook_runs_total", "vm", vm, "state", "start_network")
	after.want(t, "after the timeout", 1, "vmstated_vm_hook_failures_total", "vm", vm, "state", "start_network")
	after.want(t, "after the timeout", 1, "vmstated_vm_hook_timeouts_total", "vm", vm, "state", "start_network")
	after.want(t, "after the timeout", 1, "vmstated_vm_failures_total", "vm", vm)
	after.want(t, "after the timeout", 1, "vmstated_vm_state", "vm", vm, "state", "failed")
	h := after.histogram("vmstated_vm_hook_duration_seconds", "vm", vm, "state", "start_network")
	// The hook was stopped at its timeout: it took at least that long.
	if h == nil || h.GetSampleCount() != 1 || h.GetSampleSum() < 1 {
		t.Errorf("start_network duration histogram: %v", h)
	}
}

// A user who is not root scrapes only the VMs they own, and none of the
// daemon's own counters.
func TestMetricsOwnerView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to scrape as another user")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl to scrape as another user")
	}
	t.Parallel()
	e := newEnv(t)
	pub, err := os.MkdirTemp("", "e2em")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	e.socket = filepath.Join(pub, "ctl.sock")
	mine := e.addVM("mmine", sleeper("    owner = 65534;\n"))
	other := e.addVM("mother", sleeper(""))
	e.start()

	cmd := exec.Command(curl, "-sS", "--fail", "--unix-socket", e.socket, "http://vmstated/metrics")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("scrape as nobody: %v: %s", err, errb.String())
	}
	s := parseScrape(t, out.String())
	s.want(t, "as nobody", 1, "vmstated_vm_state", "vm", mine, "state", "stopped")
	if _, ok := s.value("vmstated_vm_state", "vm", other); ok {
		t.Errorf("nobody sees %s:\n%s", other, out.String())
	}
	if strings.Contains(out.String(), other) {
		t.Errorf("the scrape as nobody names %s", other)
	}
	s.want(t, "as nobody", 1, "vmstated_vms")
	if _, ok := s.value("vmstated_api_requests_total"); ok {
		t.Errorf("nobody sees the daemon's request counters")
	}
	root := scrape(t, e.socket)
	root.want(t, "as root", 2, "vmstated_vms")
	root.want(t, "as root", 1, "vmstated_vm_state", "vm", other, "state", "stopped")
}

// A QEMU guest reading its disk: the block counters from QMP move, and the
// process's CPU time and memory are there while it runs.
func TestMetricsQEMUBlock(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img is not installed (apt-get install qemu-utils)")
	}
	t.Parallel()
	e := newEnv(t)
	disk := filepath.Join(e.work, "disk.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	// The firmware reads the disk's first sector looking for something
	// to boot.
	vm := e.addVM("mqemu", fmt.Sprintf(`    hypervisor = qemu;
    memory = 64;
    stop_timeout = 1;
    qemu { accel = tcg; serial = false; disk { path = %q; format = qcow2; interface = ide; } }
`, disk))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitState(vm, api.StateRunning)

	var s scraped
	waitUntil(t, "the disk's read counter to move", func() bool {
		s = scrape(t, e.socket)
		v, ok := s.value("libvirt_domain_block_stats_read_bytes_total", "domain", vm, "target_device", "disk0")
		return ok && v > 0
	})
	if v, _ := s.value("libvirt_domain_block_stats_read_requests_total", "domain", vm, "target_device", "disk0"); v <= 0 {
		t.Errorf("read requests %v with bytes read", v)
	}
	if _, ok := s.value("libvirt_domain_block_stats_write_bytes_total", "domain", vm, "target_device", "disk0"); !ok {
		t.Errorf("no write counter for disk0")
	}
	waitUntil(t, "QEMU's CPU time to show", func() bool {
		s = scrape(t, e.socket)
		v, ok := s.value("libvirt_domain_info_cpu_time_seconds_total", "domain", vm)
		return ok && v > 0
	})
	if v, _ := s.value("libvirt_domain_memory_stats_rss_bytes", "domain", vm); v < 1<<20 {
		t.Errorf("QEMU's resident memory %v bytes", v)
	}
	s.want(t, "running", 64<<20, "libvirt_domain_info_maximum_memory_bytes", "domain", vm)
	s.want(t, "running", 1, "vmstated_vm_state", "vm", vm, "state", "running")

	d.c.Stop(ctx(t), vm, api.StopOptions{Force: true})
	d.waitState(vm, api.StateStopped)
	waitGone(t, st.PID)
	s = scrape(t, e.socket)
	if _, ok := s.value("libvirt_domain_block_stats_read_bytes_total", "domain", vm); ok {
		t.Errorf("a stopped VM still has block counters")
	}
}

// -m serves the same text on TCP, every VM, GET only; a bad address stops
// the daemon at start-up with a message that says what to give.
func TestMetricsTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("mtcp", sleeper("    owner = 65534;\n"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e.start("-m", addr)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := parseScrape(t, string(b))
	s.want(t, "on TCP", 1, "vmstated_vm_state", "vm", vm, "state", "stopped")
	if _, ok := s.value("vmstated_event_readers_cut_off_total"); !ok {
		t.Errorf("TCP scrape lacks the daemon's own counters")
	}
	resp, err = http.Post("http://"+addr+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics on TCP: %s", resp.Status)
	}

	e2 := newEnv(t)
	_, errOut, code := e2.run(vmstatedBin, append([]string{"-f"}, append(e2.flags(), "-m", "nonsense")...)...)
	if code == 0 || !strings.Contains(errOut, "want host:port") {
		t.Errorf("-m nonsense: exit %d: %s", code, errOut)
	}
}

// After a daemon restart that took over a running VM, the new daemon's
// counters start from zero (the take-over is no exit and no restart), and
// the re-adopted process's series are there.
func TestMetricsAfterDaemonRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vm := e.addVM("madopt", sleeper(""))
	d := e.start()
	d.do(vm, api.ActionStart)
	st := d.waitUp(vm)
	e.waitLastHook(vm, "running")
	scrape(t, e.socket).want(t, "first daemon", 0, "vmstated_vm_readoptions_total", "vm", vm)
	if code := d.term(); code != 0 {
		t.Fatalf("vmstated exited %d on SIGTERM", code)
	}
	d2 := e.start()
	d2.waitStatus(vm, "re-adopted", func(s api.Status) bool {
		return s.State == api.StateRunning && s.PID == st.PID
	})
	s := scrape(t, e.socket)
	s.want(t, "second daemon", 1, "vmstated_vm_state", "vm", vm, "state", "running")
	s.want(t, "second daemon", 0, "vmstated_vm_restarts_total", "vm", vm)
	s.want(t, "second daemon", 0, "vmstated_vm_failures_total", "vm", vm)
	s.want(t, "second daemon", 1, "vmstated_vm_readoptions_total", "vm", vm)
	if _, ok := s.value("vmstated_vm_exits_total", "vm", vm); ok {
		t.Errorf("the take-over counted as an exit")
	}
	if _, ok := s.value("libvirt_domain_info_cpu_time_seconds_total", "domain", vm); !ok {
		t.Errorf("no CPU time for the re-adopted process")
	}
	if v, _ := s.value("libvirt_domain_memory_stats_rss_bytes", "domain", vm); v <= 0 {
		t.Errorf("resident memory of the re-adopted process: %v", v)
	}
}
