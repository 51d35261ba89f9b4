package statemachine

import (
	"fmt"
	"strings"
	"time"
)

// RestartBudget limits automatic restarts: at most Max of them within any
// sliding window of Window. The (Max+1)-th automatic restart inside one
// window exhausts the budget.
//
// Restarts asked for by a user are not recorded here; only the supervisor's
// own restarts after a guest reboot or crash are.
type RestartBudget struct {
	Max    int
	Window time.Duration
	times  []time.Time
}

// Record notes an automatic restart at now. It returns how many automatic
// restarts fall in the window (now-Window, now], this one included, and
// whether that is still within the budget.
func (b *RestartBudget) Record(now time.Time) (count int, ok bool) {
	b.prune(now)
	b.times = append(b.times, now)
	return len(b.times), len(b.times) <= b.Max
}

// Count returns the automatic restarts in the window ending at now.
func (b *RestartBudget) Count(now time.Time) int {
	b.prune(now)
	return len(b.times)
}

// prune drops restarts that are no longer inside (now-Window, now].
func (b *RestartBudget) prune(now time.Time) {
	keep := b.times[:0]
	for _, t := range b.times {
		if now.Sub(t) < b.Window {
			keep = append(keep, t)
		}
	}
	b.times = keep
}

// Reset forgets every recorded restart (failreset).
func (b *RestartBudget) Reset() { b.times = nil }

// Times returns the recorded restarts, oldest first, for persistence.
func (b *RestartBudget) Times() []time.Time {
	return append([]time.Time(nil), b.times...)
}

// SetTimes replaces the recorded restarts (when a persisted record is
// loaded).
func (b *RestartBudget) SetTimes(ts []time.Time) {
	b.times = append([]time.Time(nil), ts...)
}

// ExhaustedReason says why the budget stopped a VM, in words for status.
func (b *RestartBudget) ExhaustedReason(count int) string {
	return fmt.Sprintf("%d restarts within %s, maxrestart is %d", count, FormatDuration(b.Window), b.Max)
}

// FormatDuration writes d the way a config would (30s, 5m, 2h30m), without
// the trailing zero units time.Duration.String adds.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
