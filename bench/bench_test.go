package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestShortRun runs every scenario with tiny sizes so that the suite cannot
// rot. It checks that the suite runs and produces its table, chart and
// document section; it asserts nothing about timing.
func TestShortRun(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the suite reads /proc; it runs on Linux only")
	}
	if _, err := exec.LookPath(goTool()); err != nil {
		t.Skip("no go tool to build the daemon with:", err)
	}
	wd, _ := os.Getwd()
	repo, err := FindRepo(wd)
	if err != nil {
		t.Fatal(err)
	}
	opt := Short(repo)
	opt.Idle = 200 * time.Millisecond
	var log bytes.Buffer
	opt.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opt)
	if err != nil {
		t.Fatalf("suite: %v\n%s", err, log.String())
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	for _, want := range []string{"1. lifecycle", "2. scale", "3. crash detection", "4. reload", "start → running", "GET /metrics", "between scrapes", "commit:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	var svg bytes.Buffer
	if err := rep.WriteChart(&svg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svg.String(), "<svg") || !strings.Contains(svg.String(), "vmstated start") ||
		!strings.Contains(svg.String(), "wait+exec") {
		t.Errorf("chart is missing its panels:\n%.300s", svg.String())
	}
	doc := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(doc, []byte("# head\n"+BeginMarker+"\nold\n"+EndMarker+"\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.UpdateDoc(doc, "chart.svg"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	if s := string(b); strings.Contains(s, "old") || !strings.Contains(s, "| 1. lifecycle") ||
		!strings.HasSuffix(s, EndMarker+"\ntail\n") || !strings.Contains(s, "(chart.svg)") {
		t.Errorf("document not updated as expected:\n%s", s)
	}
	if left := descendants(os.Getpid()); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

func TestSampleQuantiles(t *testing.T) {
	s := Sample{5, 1, 4, 2, 3}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 3}, {0.95, 5}, {1, 5}} {
		if got := s.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if (Sample{}).Median() != 0 {
		t.Error("empty sample median not 0")
	}
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0.7, 1}, {1.3, 2}, {3, 5}, {7, 10}, {23, 50}, {0, 1}} {
		if got := niceStep(c.in); got != c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
