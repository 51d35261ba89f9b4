package qmp

import (
	"sync"
	"sync/atomic"
)

// DefaultEventBuffer is the buffer size Subscribe uses for a size <= 0.
const DefaultEventBuffer = 64

// Subscription receives a Client's events on a buffered channel. The
// reader never waits for a subscriber: when the buffer is full, the new
// event is dropped and counted, so a slow consumer loses the newest events
// rather than stalling replies to commands.
type Subscription struct {
	ch      chan Event
	dropped atomic.Uint64

	mu     sync.Mutex // guards client and closed
	client *Client
	closed bool
	once   sync.Once
}

// NewSubscription makes a subscription with room for buffer events, to be
// passed to Dial or NewClient with WithSubscription.
func NewSubscription(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	return &Subscription{ch: make(chan Event, buffer)}
}

// Subscribe adds a subscriber with room for buffer events. Events that
// arrived before the call are not replayed. On a closed Client the
// subscription's channel is closed at once.
func (c *Client) Subscribe(buffer int) *Subscription {
	s := NewSubscription(buffer)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		s.closeLocked()
		return s
	}
	if s.attach(c) {
		c.subs[s] = struct{}{}
	}
	return s
}

// attach binds s to c unless s was closed already.
func (s *Subscription) attach(c *Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.client = c
	return true
}

// Events returns the channel events arrive on, in the order the server
// sent them. It is closed when the connection ends (after every event read
// before the end) or when Close is called.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped is the number of events lost because the buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes the channel. It is safe to call more than
// once and concurrently with event delivery.
func (s *Subscription) Close() {
	s.mu.Lock()
	c := s.client
	if c == nil {
		s.closed = true
		s.once.Do(func() { close(s.ch) })
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	c.mu.Lock()
	delete(c.subs, s)
	s.closeLocked()
	c.mu.Unlock()
}

// deliver is called with the client's mu held.
func (s *Subscription) deliver(e Event) {
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

// closeLocked is called with the client's mu held (or before the
// subscription is attached).
func (s *Subscription) closeLocked() {
	s.once.Do(func() { close(s.ch) })
}
