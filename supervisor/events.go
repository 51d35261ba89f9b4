package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmstated/vmstated/atomicfile"

	"github.com/vmstated/vmstated/statemachine"
)

// Event kinds.
const (
	// KindTransition: a VM moved from one state to another.
	KindTransition = "transition"
	// KindConfig: a VM's config was added, changed, removed or found
	// invalid.
	KindConfig = "config"
	// KindHook: the hook of state To finished. Reason is empty when it
	// succeeded and says why when it did not (a transition follows).
	KindHook = "hook"
	// KindRecord: a VM's state record could not be written (Reason says
	// why), or is written again after that (Reason "saved").
	KindRecord = "record"
	// KindAdopted: a hypervisor that runs was taken over (after a daemon
	// restart, or found running before a launch); Reason names it.
	KindAdopted = "adopted"
	// KindLost: the subscriber missed events (it asked to resume after a
	// sequence number no longer kept, or it read too slowly).
	KindLost = "lost"
)

// Event is one entry of the daemon's event stream.
type Event struct {
	Seq    uint64             `json:"seq"`
	Time   time.Time          `json:"time"`
	Kind   string             `json:"kind"`
	VM     string             `json:"vm,omitempty"`
	Event  statemachine.Event `json:"event,omitempty"`
	From   statemachine.State `json:"from,omitempty"`
	To     statemachine.State `json:"to,omitempty"`
	Reason string             `json:"reason,omitempty"`
	// Lost counts the events a KindLost entry stands for, when known.
	Lost uint64 `json:"lost,omitempty"`
	// Skipped marks a KindHook event of a state that has no hook.
	Skipped bool `json:"skipped,omitempty"`
}

// busHistory is how many past events the bus keeps for subscribers that
// resume after a sequence number.
const busHistory = 4096

// subscriberBuffer is how many events may wait for one subscriber before it
// is considered too slow and cut off. A VM never waits for a subscriber.
const subscriberBuffer = 1024

// Bus numbers events and fans them out to subscribers. Publishing never
// blocks: a subscriber whose buffer is full is cut off with a final
// KindLost event, and may resubscribe after the last sequence it saw.
type Bus struct {
	mu  sync.Mutex
	seq uint64
	// ring holds the last busHistory events; once it is full, the
	// oldest is at head and each new event takes its place (a shift of
	// the whole history for every event cost more than the rest of a
	// VM's stop).
	ring   []Event
	head   int
	subs   map[*Subscription]struct{}
	closed bool
	// cutOffs counts the subscribers cut off for reading too slowly.
	cutOffs uint64

	// base is the last sequence number an earlier run of the daemon may
	// have used; this run's events come after it.
	base uint64
	// ceiling is the highest number reserved in seqFile; seqFile is
	// empty when the numbers are not kept across restarts.
	ceiling uint64
	seqFile string
	logf    func(string, ...any)
}

// seqBlock is how many sequence numbers are reserved on disk at a time:
// one durable write per block keeps the numbers going up across daemon
// restarts at no cost per event. The write holds the bus, so every VM
// that publishes meanwhile waits for its two flushes of the disk: with
// 1,024 a start of 1,000 VMs (7,000 events) waited seven times, half a
// second of actors' time in all. A restart skips at most a block of
// numbers, which only have to go up.
const seqBlock = 1 << 16

// keepSeqIn makes the sequence numbers go on from where an earlier run of
// the daemon left them, through a small file that holds the highest number
// reserved. Call it before the first Publish.
func (b *Bus) keepSeqIn(path string, logf func(string, ...any)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seqFile, b.logf = path, logf
	if data, err := os.ReadFile(path); err == nil {
		n, perr := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if perr != nil {
			logf("event sequence file %s is unreadable (%v); numbering starts after the time instead", path, perr)
			// Microseconds since the epoch are past any number an
			// earlier run handed out at less than one event per µs.
			n = uint64(time.Now().UnixMicro())
		}
		b.seq, b.base, b.ceiling = n, n, n
	} else if !os.IsNotExist(err) {
		logf("reading event sequence file: %v", err)
	}
}

// reserve writes a new ceiling once the numbers reach the old one; called
// with b.mu held.
func (b *Bus) reserve() {
	if b.seqFile == "" || b.seq < b.ceiling {
		return
	}
	next := b.seq + seqBlock
	err := atomicfile.Write(b.seqFile, []byte(strconv.FormatUint(next, 10)+"\n"), atomicfile.Options{Durable: true})
	if err != nil {
		// Go on: numbers are still unique in this run. The next run
		// starts after the last ceiling written, and may reuse some.
		if b.ceiling == b.base {
			b.logf("saving the event sequence: %v", err)
		}
		b.ceiling = b.seq + 1
		return
	}
	b.ceiling = next
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{subs: make(map[*Subscription]struct{})}
}

// Publish stamps e with the next sequence number (and the time, when unset)
// and delivers it.
func (b *Bus) Publish(e Event) Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.reserve()
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(b.ring) < busHistory {
		b.ring = append(b.ring, e)
	} else {
		b.ring[b.head] = e
		b.head = (b.head + 1) % busHistory
	}
	for s := range b.subs {
		// Only Publish sends, under b.mu, so the length can only shrink
		// meanwhile: one slot always stays free for the KindLost notice.
		if len(s.ch) < cap(s.ch)-1 {
			s.ch <- e
			continue
		}
		s.cutOff(e.Seq - 1)
		delete(b.subs, s)
		b.cutOffs++
	}
	return e
}

// Seq returns the sequence number of the last event published.
func (b *Bus) Seq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// CutOffs returns how many subscribers were cut off, missing events, for
// reading too slowly.
func (b *Bus) CutOffs() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cutOffs
}

// Subscription is one reader of the bus.
type Subscription struct {
	ch   chan Event
	bus  *Bus
	once sync.Once
}

// C delivers events in sequence order. It is closed when the subscription
// ends: Close was called, the bus closed, or the reader was too slow (then
// the last event is KindLost).
func (s *Subscription) C() <-chan Event { return s.ch }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		s.once.Do(func() { close(s.ch) })
	}
}

// cutOff ends a subscriber that fell behind; called with the bus locked.
func (s *Subscription) cutOff(lastDelivered uint64) {
	s.once.Do(func() {
		// The reserved slot guarantees room for the notice.
		s.ch <- Event{Seq: lastDelivered, Time: time.Now(), Kind: KindLost,
			Reason: fmt.Sprintf("reader too slow: events after %d were dropped; resume after %d", lastDelivered, lastDelivered)}
		close(s.ch)
	})
}

// Subscribe starts a subscription. With after > 0 it first replays the kept
// events whose sequence is greater than after; when some of those are no
// longer kept, a KindLost event says how many were missed. With after 0 it
// starts with the next event published.
func (b *Bus) Subscribe(after uint64) *Subscription {
	return b.subscribe(after, after > 0)
}

// SubscribeReplay is Subscribe that replays for after 0 too: from the
// oldest event kept.
func (b *Bus) SubscribeReplay(after uint64) *Subscription {
	return b.subscribe(after, true)
}

func (b *Bus) subscribe(after uint64, replaying bool) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	var replay []Event
	if replaying && after < b.seq {
		oldest := b.seq + 1 - uint64(len(b.ring))
		switch {
		case after+1 < oldest && after < b.base:
			// Some of them were an earlier daemon's: how many is not
			// known.
			replay = append(replay, Event{Seq: oldest - 1, Time: time.Now(), Kind: KindLost,
				Reason: fmt.Sprintf("events after %d are no longer kept: the daemon restarted since, and this run's events start after %d", after, b.base)})
		case after+1 < oldest:
			missed := oldest - after - 1
			replay = append(replay, Event{Seq: oldest - 1, Time: time.Now(), Kind: KindLost, Lost: missed,
				Reason: fmt.Sprintf("%d events after %d are no longer kept", missed, after)})
		}
		for i := range b.ring {
			if e := b.ring[(b.head+i)%len(b.ring)]; e.Seq > after {
				replay = append(replay, e)
			}
		}
	}
	s := &Subscription{ch: make(chan Event, subscriberBuffer+len(replay)+1), bus: b}
	for _, e := range replay {
		s.ch <- e
	}
	if b.closed {
		s.once.Do(func() { close(s.ch) })
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Close ends every subscription.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.once.Do(func() { close(s.ch) })
		delete(b.subs, s)
	}
}
