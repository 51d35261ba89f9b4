// Command vmbench is vmstated's benchmark suite (make bench): it builds
// the daemon, measures it from outside against references taken in the
// same run, prints a table, and updates docs/benchmarks.md and its chart.
// It exits non-zero only when it could not run; missed targets are
// reported, not failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmstated/vmstated/bench"
)

func main() {
	if ok, code := bench.Helper(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(run())
}

func run() int {
	short := flag.Bool("short", false, "small sizes: every scenario, quickly")
	doc := flag.String("doc", "", "update the results section of this Markdown file (e.g. docs/benchmarks.md)")
	chart := flag.String("chart", "", "write the latency chart (SVG) here (e.g. docs/benchmarks-latency.svg)")
	rounds := flag.Int("rounds", 0, "runs of each latency scenario (0: the default of the size)")
	scaleN := flag.Int("scale", 0, "VMs of the scale scenario (0: default)")
	idle := flag.Duration("idle", 0, "idle CPU measuring time (0: default)")
	qemuN := flag.Int("qemu", -1, "QEMU VMs (0 skips the scenario; -1: default)")
	only := flag.String("only", "", "comma-separated scenarios to run: lifecycle,scale,crash,qemu,suspend (crash includes reload)")
	flag.Parse()

	wd, _ := os.Getwd()
	repo, err := bench.FindRepo(wd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmbench:", err)
		return 1
	}
	opt := bench.Full(repo)
	if *short {
		opt = bench.Short(repo)
	}
	if *rounds > 0 {
		opt.Rounds = *rounds
	}
	if *scaleN > 0 {
		opt.ScaleVMs = *scaleN
	}
	if *idle > 0 {
		opt.Idle = *idle
	}
	if *qemuN >= 0 {
		opt.QEMUVMs = *qemuN
	}
	if *only != "" {
		opt.Only = strings.Split(*only, ",")
	}
	opt.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	rep, err := bench.Run(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmbench:", err)
		return 1
	}
	fmt.Println()
	rep.WriteText(os.Stdout)
	chartRef := ""
	if *chart != "" {
		f, err := os.Create(*chart)
		if err == nil {
			err = rep.WriteChart(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmbench: writing the chart:", err)
			return 1
		}
		chartRef = *chart
		if *doc != "" {
			if rel, err := filepath.Rel(filepath.Dir(*doc), *chart); err == nil {
				chartRef = rel
			}
		}
	}
	if *doc != "" {
		if err := rep.UpdateDoc(*doc, chartRef); err != nil {
			fmt.Fprintln(os.Stderr, "vmbench:", err)
			return 1
		}
		fmt.Printf("results written to %s\n", *doc)
	}
	return 0
}
