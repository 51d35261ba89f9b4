package bench

import (
	"math"
	"sort"
	"time"
)

// Sample is a set of durations of one measured step.
type Sample []time.Duration

// sorted returns a sorted copy.
func (s Sample) sorted() Sample {
	c := append(Sample(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// Quantile returns the q-quantile (0..1) by nearest rank; 0 for no data.
func (s Sample) Quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	i := int(math.Ceil(q*float64(len(c)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(c) {
		i = len(c) - 1
	}
	return c[i]
}

// Median is the 0.5 quantile.
func (s Sample) Median() time.Duration { return s.Quantile(0.5) }

// Max is the largest value.
func (s Sample) Max() time.Duration { return s.Quantile(1) }

// Min is the smallest value.
func (s Sample) Min() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s.sorted()[0]
}

// floats are per-run figures (one per run) whose median and range the
// report shows.
type floats []float64

func (f floats) sorted() floats {
	c := append(floats(nil), f...)
	sort.Float64s(c)
	return c
}

func (f floats) median() float64 {
	if len(f) == 0 {
		return math.NaN()
	}
	c := f.sorted()
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func (f floats) min() float64 {
	if len(f) == 0 {
		return math.NaN()
	}
	return f.sorted()[0]
}

func (f floats) max() float64 {
	if len(f) == 0 {
		return math.NaN()
	}
	return f.sorted()[len(f)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
