package consumer

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// MemQueueConfig configures a [MemQueue].
type MemQueueConfig struct {
	// VisibilityTimeout is the lease a delivery gets from Fetch and from
	// each Extend. Default 30s.
	VisibilityTimeout time.Duration
}

// MemQueue is an in-process queue that honours the whole [Source] contract:
// leases that expire and redeliver, Extend, Nack with a delay and attempt
// counts carried across redeliveries. It is the default for examples and
// unit tests; it keeps nothing when the process exits.
//
// A MemQueue is safe for concurrent use by any number of consumers and
// publishers.
type MemQueue struct {
	vis time.Duration

	mu      sync.Mutex
	ready   fifo
	delayed entryHeap // by at: when the message becomes visible
	leased  entryHeap // by at: when the lease ends
	token   uint64
	wake    chan struct{} // closed and replaced when messages become ready
	waiters int
}

var (
	_ Source    = (*MemQueue)(nil)
	_ Publisher = (*MemQueue)(nil)
)

// NewMemQueue returns an empty queue.
func NewMemQueue(cfg MemQueueConfig) (*MemQueue, error) {
	if cfg.VisibilityTimeout < 0 {
		return nil, fmt.Errorf("consumer: negative VisibilityTimeout %s", cfg.VisibilityTimeout)
	}
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	return &MemQueue{vis: cfg.VisibilityTimeout, wake: make(chan struct{})}, nil
}

type entryState uint8

const (
	stateReady entryState = iota
	stateDelayed
	stateLeased
	stateDone
)

type memEntry struct {
	msg     Message // Attempt holds the deliveries made so far
	state   entryState
	at      time.Time // visible-at when delayed, lease end when leased
	token   uint64    // current lease token when leased
	heapIdx int
}

// Publish enqueues msgs; see [Publisher].
func (q *MemQueue) Publish(ctx context.Context, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	entries := make([]memEntry, len(msgs))
	for i := range msgs {
		e := &entries[i]
		e.msg = msgs[i]
		e.msg.Attempt = 0
		if e.msg.ID == "" {
			e.msg.ID = NewMessageID()
		}
		if e.msg.EnqueuedAt.IsZero() {
			e.msg.EnqueuedAt = now
		}
	}
	q.mu.Lock()
	for i := range entries {
		q.ready.push(&entries[i])
	}
	q.signalLocked()
	q.mu.Unlock()
	return nil
}

// Fetch leases up to max messages; see [Source].
func (q *MemQueue) Fetch(ctx context.Context, max int) ([]Delivery, error) {
	if max <= 0 {
		return nil, fmt.Errorf("consumer: Fetch max must be positive, got %d", max)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		now := time.Now()
		q.promoteLocked(now)
		if n := q.ready.len(); n > 0 {
			if n > max {
				n = max
			}
			out := make([]Delivery, n)
			ds := make([]memDelivery, n)
			deadline := now.Add(q.vis)
			for i := range n {
				e := q.ready.pop()
				q.token++
				e.msg.Attempt++
				e.state = stateLeased
				e.at = deadline
				e.token = q.token
				d := &ds[i]
				*d = memDelivery{q: q, e: e, token: e.token, msg: e.msg, deadline: deadline}
				heap.Push(&q.leased, e)
				out[i] = d
			}
			q.mu.Unlock()
			return out, nil
		}
		// Nothing ready: sleep until a publish or nack, the next delayed
		// message or lease end, or ctx.
		var next time.Time
		if len(q.delayed) > 0 {
			next = q.delayed[0].at
		}
		if len(q.leased) > 0 && (next.IsZero() || q.leased[0].at.Before(next)) {
			next = q.leased[0].at
		}
		wake := q.wake
		q.waiters++
		q.mu.Unlock()

		var timeout <-chan time.Time
		if !next.IsZero() {
			wait := next.Sub(now)
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timeout = timer.C
		}
		select {
		case <-wake:
		case <-timeout:
		case <-ctx.Done():
		}
		q.mu.Lock()
		q.waiters--
		q.mu.Unlock()
	}
}

// MemQueueStats counts a queue's messages by state.
type MemQueueStats struct {
	Ready   int // visible, waiting for a Fetch
	Delayed int // nacked with a delay that has not passed
	Leased  int // held by a consumer
}

// Stats returns the current counts. Leases that have ended are counted as
// ready.
func (q *MemQueue) Stats() MemQueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promoteLocked(time.Now())
	return MemQueueStats{Ready: q.ready.len(), Delayed: len(q.delayed), Leased: len(q.leased)}
}

// promoteLocked makes delayed messages whose time has come and messages
// whose lease has ended ready again.
func (q *MemQueue) promoteLocked(now time.Time) {
	moved := false
	for len(q.leased) > 0 && !q.leased[0].at.After(now) {
		e := heap.Pop(&q.leased).(*memEntry)
		e.state = stateReady
		q.ready.push(e)
		moved = true
	}
	for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
		e := heap.Pop(&q.delayed).(*memEntry)
		e.state = stateReady
		q.ready.push(e)
		moved = true
	}
	if moved {
		q.signalLocked()
	}
}

func (q *MemQueue) signalLocked() {
	if q.waiters > 0 {
		close(q.wake)
		q.wake = make(chan struct{})
	}
}

// holdsLocked reports whether d still holds its message's lease, expiring
// the lease first when its time is up.
func (q *MemQueue) holdsLocked(d *memDelivery, now time.Time) bool {
	e := d.e
	if e.state != stateLeased || e.token != d.token {
		return false
	}
	if !e.at.After(now) {
		q.promoteLocked(now)
		return false
	}
	return true
}

type memDelivery struct {
	q        *MemQueue
	e        *memEntry
	token    uint64
	msg      Message
	deadline time.Time // guarded by q.mu
}

func (d *memDelivery) Message() *Message { return &d.msg }

func (d *memDelivery) Deadline() time.Time {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	return d.deadline
}

func (d *memDelivery) Extend(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := d.q
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if !q.holdsLocked(d, now) {
		return ErrLeaseLost
	}
	d.deadline = now.Add(q.vis)
	d.e.at = d.deadline
	heap.Fix(&q.leased, d.e.heapIdx)
	return nil
}

func (d *memDelivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := d.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.holdsLocked(d, time.Now()) {
		return ErrLeaseLost
	}
	heap.Remove(&q.leased, d.e.heapIdx)
	d.e.state = stateDone
	return nil
}

func (d *memDelivery) Nack(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := d.q
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if !q.holdsLocked(d, now) {
		return ErrLeaseLost
	}
	e := d.e
	heap.Remove(&q.leased, e.heapIdx)
	e.token = 0
	if delay <= 0 {
		e.state = stateReady
		q.ready.push(e)
		q.signalLocked()
		return nil
	}
	e.state = stateDelayed
	e.at = now.Add(delay)
	heap.Push(&q.delayed, e)
	// A sleeping Fetch must learn about the new earliest wake-up time.
	q.signalLocked()
	return nil
}

// fifo is a queue of entries backed by a slice that is compacted as its
// head advances.
type fifo struct {
	buf  []*memEntry
	head int
}

func (f *fifo) len() int { return len(f.buf) - f.head }

func (f *fifo) push(e *memEntry) { f.buf = append(f.buf, e) }

func (f *fifo) pop() *memEntry {
	e := f.buf[f.head]
	f.buf[f.head] = nil
	f.head++
	if f.head == len(f.buf) {
		f.buf = f.buf[:0]
		f.head = 0
	} else if f.head >= 1024 && f.head*2 >= len(f.buf) {
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf = f.buf[:n]
		f.head = 0
	}
	return e
}

// entryHeap is a min-heap of entries by at.
type entryHeap []*memEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *entryHeap) Push(x any) {
	e := x.(*memEntry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}

func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

// NewMessageID returns a random 128-bit message ID in hex, the ID
// publishers give a message that has none.
func NewMessageID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(errors.Join(errors.New("consumer: reading random bytes"), err))
	}
	return hex.EncodeToString(b[:])
}
