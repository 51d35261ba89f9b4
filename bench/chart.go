package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// panel is one box-plot group of the chart with its own time axis.
type panel struct {
	title string
	names []string
	data  map[string]Sample
}

// WriteChart draws the latency distributions of scenarios 1 and 3 as SVG
// box plots (box: quartiles, line: median, whiskers: min and max, dots:
// every sample), one panel per scenario.
func (r *Report) WriteChart(w io.Writer) error {
	var panels []panel
	if len(r.Lifecycle) > 0 {
		panels = append(panels, panel{"Scenario 1: lifecycle latency, vmstated vs plain shell (ms)",
			[]string{"vmstated start", "shell start", "vmstated stop", "shell stop"}, r.Lifecycle})
	}
	if len(r.Crash) > 0 {
		panels = append(panels, panel{"Scenario 3: process exit → restarting hook starts (ms)",
			[]string{"vmstated", "wait+exec"}, r.Crash})
	}
	const (
		width   = 820
		left    = 130
		right   = 30
		rowH    = 34
		titleH  = 28
		axisH   = 34
		panelGp = 16
	)
	height := 10
	for _, p := range panels {
		height += titleH + rowH*len(p.names) + axisH + panelGp
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	y := 10
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold" font-size="13">%s</text>`+"\n", y+18, esc(p.title))
		y += titleH
		hi := 0.0
		for _, n := range p.names {
			hi = math.Max(hi, ms(p.data[n].Max()))
		}
		step := niceStep(hi / 6)
		hi = math.Ceil(hi/step) * step
		if hi <= 0 {
			hi, step = 1, 0.2
		}
		x := func(v float64) float64 { return left + (width-left-right)*v/hi }
		top := y
		for i, n := range p.names {
			s := p.data[n]
			cy := float64(y + rowH*i + rowH/2)
			fill := "#4c78a8"
			if !strings.HasPrefix(n, "vmstated") {
				fill = "#bbbbbb"
			}
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-8, cy, esc(n))
			if len(s) == 0 {
				continue
			}
			q1, q2, q3 := ms(s.Quantile(0.25)), ms(s.Median()), ms(s.Quantile(0.75))
			lo, mx := ms(s.Min()), ms(s.Max())
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x(lo), x(mx), cy, cy)
			for _, e := range []float64{lo, mx} {
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x(e), x(e), cy-6, cy+6)
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" fill-opacity="0.55" stroke="#333"/>`+"\n",
				x(q1), cy-10, math.Max(x(q3)-x(q1), 1), 20, fill)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>`+"\n", x(q2), x(q2), cy-10, cy+10)
			sorted := s.sorted()
			for j, v := range sorted {
				jit := float64(j%5-2) * 2.5
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.6" fill="black" fill-opacity="0.45"/>`+"\n", x(ms(v)), cy+jit)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#333">%s</text>`+"\n", x(q2)+3, cy-12, esc(fmtDur(s.Median())))
		}
		y += rowH * len(p.names)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>`+"\n", left, width-right, y, y)
		for v := 0.0; v <= hi+step/2; v += step {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/>`+"\n", x(v), x(v), top, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="11">%s</text>`+"\n", x(v), y+15, trimNum(v))
		}
		y += axisH + panelGp
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	steps := []float64{1, 2, 5, 10}
	i := sort.SearchFloat64s(steps, raw/p)
	if i >= len(steps) {
		i = len(steps) - 1
	}
	return steps[i] * p
}

func trimNum(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
