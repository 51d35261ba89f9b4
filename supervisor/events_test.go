package supervisor

import "testing"

// The bus keeps the last busHistory events: a subscriber resuming after
// any of them gets the rest in order, and one resuming before them is
// told how many it missed.
func TestBusReplaysItsHistoryInOrder(t *testing.T) {
	b := NewBus()
	const total = busHistory + busHistory/2 + 7
	for i := 0; i < total; i++ {
		b.Publish(Event{Kind: KindTransition, VM: "vm"})
	}
	oldest := uint64(total - busHistory + 1)
	for _, after := range []uint64{oldest - 1, oldest, oldest + 100, total - 1, total} {
		s := b.Subscribe(after)
		want := after + 1
		for len(s.C()) > 0 {
			e := <-s.C()
			if e.Seq != want {
				t.Fatalf("after %d: event %d, want %d", after, e.Seq, want)
			}
			want++
		}
		if want != total+1 {
			t.Errorf("after %d: replay ended before event %d, want it to reach %d", after, want, total)
		}
		s.Close()
	}
	s := b.Subscribe(3)
	e := <-s.C()
	if e.Kind != KindLost || e.Lost != oldest-4 {
		t.Errorf("resuming after 3: first event %+v, want a lost notice of %d events", e, oldest-4)
	}
	if e := <-s.C(); e.Seq != oldest {
		t.Errorf("after the lost notice: event %d, want the oldest kept, %d", e.Seq, oldest)
	}
	s.Close()
}
