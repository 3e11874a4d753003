package redisstream

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
)

// delivery is one leased entry. Its lease token is (Source's consumer name,
// count).
type delivery struct {
	s     *Source
	entry string // stream entry ID
	count int64  // delivery counter when fetched
	msg   consumer.Message

	mu       sync.Mutex
	deadline time.Time
}

var _ consumer.Delivery = (*delivery)(nil)

func (d *delivery) Message() *consumer.Message { return &d.msg }

func (d *delivery) Deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deadline
}

// Extend implements [consumer.Delivery]. It fails with an error matching
// [consumer.ErrLeaseLost], without contacting Redis, once Deadline has
// passed: another consumer may have reclaimed the entry since.
func (d *delivery) Extend(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	before := time.Now()
	if !before.Before(d.Deadline()) {
		return d.lost("extend")
	}
	n, err := extendScript.Run(ctx, d.s.client, []string{d.s.stream},
		d.s.group, d.s.name, d.s.visMS, d.entry, d.count).Int64()
	if err != nil {
		return fmt.Errorf("redisstream: extend %s: %w", d.entry, err)
	}
	if n != 1 {
		return d.lost("extend")
	}
	d.mu.Lock()
	if dl := before.Add(d.s.vis); dl.After(d.deadline) {
		d.deadline = dl
	}
	d.mu.Unlock()
	return nil
}

// Ack implements [consumer.Delivery]: XACK and XDEL in one script, so an
// acknowledged message leaves nothing behind in the stream. Concurrent Acks
// on one Source share script calls (see acker).
func (d *delivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, err := d.s.acks.ack(ctx, d.entry, d.count)
	if err != nil {
		return err
	}
	if !ok {
		return d.lost("ack")
	}
	return nil
}

// Nack implements [consumer.Delivery]. With delay <= 0 the message is added
// again at the stream's tail at once; otherwise it waits in the delayed set
// until delay has passed on the server's clock (rounded up to whole
// milliseconds), and the next Fetch after that moves it back. Either way
// it is a new stream entry that carries the message's fields and its
// attempt count.
func (d *delivery) Nack(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ms := int64(0)
	if delay > 0 {
		ms = ceilMillis(delay)
	}
	res, err := requeueScript.Run(ctx, d.s.client, []string{d.s.stream, d.s.delayed},
		d.s.group, d.s.name, d.s.visMS, ms, d.entry, d.count, "1").Int64Slice()
	if err != nil {
		return fmt.Errorf("redisstream: nack %s: %w", d.entry, err)
	}
	if len(res) != 1 || res[0] != 1 {
		return d.lost("nack")
	}
	return nil
}

func (d *delivery) lost(op string) error {
	return fmt.Errorf("redisstream: %s %s (message %q, attempt %d): %w",
		op, d.entry, d.msg.ID, d.msg.Attempt, consumer.ErrLeaseLost)
}

// maxAckBatch bounds the acknowledgements one script call carries.
const maxAckBatch = 512

// acker groups concurrent Acks of one Source into script calls: an Ack that
// arrives while a call is in flight waits for the next one, which carries
// every Ack that arrived meanwhile. One call is in flight at a time, so the
// batches grow with the load and an Ack on an idle Source goes out at once.
// Each caller still gets its own result.
type acker struct {
	s       *Source
	mu      sync.Mutex
	pending []*ackRequest
	busy    bool
}

type ackRequest struct {
	ctx   context.Context
	entry string
	count int64
	done  chan ackResult
}

type ackResult struct {
	ok  bool
	err error
}

// ack reports whether the lease (entry, count) held and the entry was
// acknowledged. If ctx ends first, it returns ctx's error, and the
// acknowledgement may still happen.
func (a *acker) ack(ctx context.Context, entry string, count int64) (bool, error) {
	req := &ackRequest{ctx: ctx, entry: entry, count: count, done: make(chan ackResult, 1)}
	a.mu.Lock()
	a.pending = append(a.pending, req)
	if !a.busy {
		a.busy = true
		go a.flush()
	}
	a.mu.Unlock()
	select {
	case r := <-req.done:
		return r.ok, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// flush sends batches until none is pending.
func (a *acker) flush() {
	var batch []*ackRequest
	for {
		a.mu.Lock()
		n := min(len(a.pending), maxAckBatch)
		if n == 0 {
			a.busy = false
			a.pending = nil
			a.mu.Unlock()
			return
		}
		batch = append(batch[:0], a.pending[:n]...)
		clear(a.pending[:n])
		a.pending = a.pending[n:]
		a.mu.Unlock()
		a.send(batch)
		clear(batch)
	}
}

func (a *acker) send(batch []*ackRequest) {
	s := a.s
	args := make([]any, 0, 3+2*len(batch))
	args = append(args, s.group, s.name, s.visMS)
	for _, r := range batch {
		args = append(args, r.entry, r.count)
	}
	// The first caller's context values (tracing) go with the call, not
	// its cancellation: the others are waiting on the same call.
	ctx := context.WithoutCancel(batch[0].ctx)
	res, err := ackScript.Run(ctx, s.client, []string{s.stream}, args...).Int64Slice()
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	for i, r := range batch {
		if err != nil {
			r.done <- ackResult{err: fmt.Errorf("redisstream: ack %s: %w", r.entry, err)}
			continue
		}
		r.done <- ackResult{ok: res[i] == 1}
	}
}
