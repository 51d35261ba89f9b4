package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Row is one line of the result table.
type Row struct {
	Scenario  string
	Metric    string
	Value     string // vmstated's figure
	Reference string // the reference measured in the same run
	Ratio     string // vmstated / reference: median [min–max] over runs
	Target    string
	Verdict   string // met, MISSED, reported, or why it was not judged
}

// Report is what a run found.
type Report struct {
	Started time.Time
	Took    time.Duration
	Env     [][2]string
	Opt     Options
	Rows    []Row
	Skipped []string
	// Lifecycle and Crash hold the latency samples drawn in the chart.
	Lifecycle map[string]Sample
	Crash     map[string]Sample
}

func (r *Report) add(row Row) { r.Rows = append(r.Rows, row) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", ms(d))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", ms(d))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// sampleSummary is "median (p95, max)".
func sampleSummary(s Sample) string {
	if len(s) == 0 {
		return "no data"
	}
	return fmt.Sprintf("%s (p95 %s, max %s, n=%d)", fmtDur(s.Median()), fmtDur(s.Quantile(0.95)), fmtDur(s.Max()), len(s))
}

// spreadF is "median [min–max]" of per-run figures.
func spreadF(f floats, unit string, prec int) string {
	if len(f) == 0 {
		return "no data"
	}
	u := ""
	if unit != "" {
		u = " " + unit
	}
	if len(f) == 1 {
		return fmt.Sprintf("%.*f%s", prec, f[0], u)
	}
	return fmt.Sprintf("%.*f%s [%.*f–%.*f]", prec, f.median(), u, prec, f.min(), prec, f.max())
}

// ratioF is the median and range of the per-run ratios a[i]/b[i].
func ratioF(a, b floats) string {
	var r floats
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return spreadF(r, "", 2)
}

// latencyRow compares two latency samples; ratios are the per-run ratios
// of medians (nil: the ratio of the overall medians). A target > 0 judges
// the median ratio.
func latencyRow(scen, metric string, v, ref Sample, ratios floats, target float64) Row {
	if len(ratios) == 0 && ref.Median() > 0 {
		ratios = floats{float64(v.Median()) / float64(ref.Median())}
	}
	row := Row{Scenario: scen, Metric: metric, Value: sampleSummary(v), Reference: sampleSummary(ref),
		Ratio: strings.TrimSpace(spreadF(ratios, "", 2)), Target: "—", Verdict: "reported"}
	if target > 0 {
		row.Target = fmt.Sprintf("ratio ≤ %.1f", target)
		row.Verdict = verdict(ratios.median() <= target)
	}
	return row
}

// describeEnv names the machine and the versions measured.
func describeEnv(ctx context.Context, repo string) [][2]string {
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = repo
		b, err := cmd.Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(b))
	}
	commit := run("git", "rev-parse", "--short=12", "HEAD")
	if st := run("git", "status", "--porcelain", "--untracked-files=no"); st != "" && st != "unknown" {
		commit += " (with uncommitted changes)"
	}
	qv := "not installed"
	if _, err := exec.LookPath(qemuBinary); err == nil {
		qv = firstLine(run(qemuBinary, "--version"))
	}
	lv := "not installed"
	if _, err := exec.LookPath("virsh"); err == nil {
		lv = run("virsh", "--version")
	}
	return [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"commit", commit},
		{"machine", fmt.Sprintf("%s, %d CPUs, %s", cpuModel(), runtime.NumCPU(), memTotal())},
		{"kernel", run("uname", "-sr")},
		{"go", runtime.Version()},
		{"limits", limits()},
		{"qemu", qv},
		{"libvirt", lv},
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
			return fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return "memory unknown"
}

// WriteText prints the table for a terminal.
func (r *Report) WriteText(w io.Writer) {
	for _, kv := range r.Env {
		fmt.Fprintf(w, "%-8s %s\n", kv[0]+":", kv[1])
	}
	fmt.Fprintln(w)
	head := []string{"scenario", "metric", "vmstated", "reference", "ratio", "target", "verdict"}
	rows := [][]string{head}
	for _, x := range r.Rows {
		rows = append(rows, []string{x.Scenario, x.Metric, x.Value, x.Reference, x.Ratio, x.Target, x.Verdict})
	}
	width := make([]int, len(head))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for j, row := range rows {
		for i, c := range row {
			fmt.Fprintf(w, "%s%s  ", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		fmt.Fprintln(w)
		if j == 0 {
			for i := range row {
				fmt.Fprintf(w, "%s  ", strings.Repeat("-", width[i]))
			}
			fmt.Fprintln(w)
		}
	}
	for _, sk := range r.Skipped {
		fmt.Fprintln(w, "skipped:", sk)
	}
	fmt.Fprintf(w, "took %v\n", r.Took.Round(time.Second))
}

// WriteMarkdownTable writes the table (with the run's description) as
// Markdown, the part of docs/benchmarks.md a run replaces.
func (r *Report) WriteMarkdownTable(w io.Writer, chart string) {
	fmt.Fprintln(w, "| | |")
	fmt.Fprintln(w, "|---|---|")
	for _, kv := range r.Env {
		fmt.Fprintf(w, "| %s | %s |\n", kv[0], md(kv[1]))
	}
	fmt.Fprintf(w, "| sizes | lifecycle %d VMs × %d runs; scale %d VMs × %d runs, idle %v; crashes %d; reloads %d; QEMU %d VMs |\n",
		r.Opt.LifecycleVMs, r.Opt.Rounds, r.Opt.ScaleVMs, r.Opt.ScaleRounds, r.Opt.Idle, r.Opt.Crashes, r.Opt.Reloads, r.Opt.QEMUVMs)
	fmt.Fprintf(w, "| suite run time | %v |\n\n", r.Took.Round(time.Second))
	fmt.Fprintln(w, "| scenario | metric | vmstated | reference (same run) | ratio | target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", md(x.Scenario), md(x.Metric), md(x.Value),
			md(x.Reference), md(x.Ratio), md(x.Target), md(x.Verdict))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		for _, sk := range r.Skipped {
			fmt.Fprintf(w, "- skipped: %s\n", md(sk))
		}
	}
	if chart != "" {
		fmt.Fprintf(w, "\n![latency distributions of scenarios 1 and 3](%s)\n", chart)
	}
}

func md(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// Markers around the generated part of docs/benchmarks.md.
const (
	BeginMarker = "<!-- begin results: written by make bench -->"
	EndMarker   = "<!-- end results -->"
)

// UpdateDoc replaces the generated part of the document at path (between
// the markers) with this run's table; the rest is kept as written.
func (r *Report) UpdateDoc(path, chart string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	s := string(old)
	i, j := strings.Index(s, BeginMarker), strings.Index(s, EndMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q section to replace", path, BeginMarker, EndMarker)
	}
	var b strings.Builder
	b.WriteString(s[:i+len(BeginMarker)])
	b.WriteString("\n\n")
	r.WriteMarkdownTable(&b, chart)
	b.WriteString("\n")
	b.WriteString(s[j:])
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// limits names the kernel limits that bound how many VMs one daemon can
// run.
func limits() string {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("fs.inotify.max_user_instances=%s, max_user_watches=%s, euid %d",
		read("/proc/sys/fs/inotify/max_user_instances"), read("/proc/sys/fs/inotify/max_user_watches"), os.Geteuid())
}
