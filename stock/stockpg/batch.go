package stockpg

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/idemq/idemq/stock"

	"github.com/idemq/idemq/internal/pgschema"
)

// Group commit of Reserve. A Reserve through a pool joins the pending list
// of its key: its item, with batches on one shard at a time (sharded
// stores) or on every shard (exact: unsharded stores, and the requests
// that one shard could not serve). If no batch of the key is under way it
// also starts a flusher, which takes up to maxReserveBatch pending
// requests, runs them in one call of the reserve_batch function (one round
// trip, one transaction, one commit), tells each caller its own result,
// and goes on until the list is empty. Requests that arrive while a batch
// runs thus wait for it and go together in the next one: under load each
// batch carries many requests, and when idle a Reserve costs one round
// trip. Flushers exist only while there is work, so a Store needs no Close
// for them.
//
// An exact key has one batch in flight at a time: more would only queue
// on the same rows. A sharded key starts another flusher, on another
// shard, while parallelPending requests wait, up to parallelBatches
// flushers: one batch leaves the database idle while its commit is
// flushed and while its callers are answered and ask again, and a second
// one on another shard fills those gaps. More than that would split the
// requests into smaller batches, each with its own fixed cost and commit,
// for little more overlap. It also starts one, up to a flusher per shard,
// whenever a full batch is pending.
const (
	maxReserveBatch = 1000
	maxSettle       = 8

	parallelBatches = 2
	parallelPending = 8

	// exactShard is the shard of a batch that locks every shard.
	exactShard = -1
)

// batchKey is a pending list: an item's requests, for batches on single
// shards (sharded stores) or on every shard of the item (exact).
type batchKey struct {
	item  string
	exact bool
}

// reserveCall is one Reserve waiting for its batch.
type reserveCall struct {
	ctx  context.Context // the caller's: a batch does not take it once done
	req  stock.ReserveRequest
	done chan reserveResult // buffered: the flusher never waits for the caller

	// Guarded by batcher.mu.
	run       *batchRun // the batch it is in, while taken
	abandoned bool      // its caller gave up
}

type reserveResult struct {
	r   stock.Reservation
	err error
}

// batchRun is one batch under way. Its statement is cancelled only when
// every caller in it has given up.
type batchRun struct {
	shard  int
	cancel context.CancelFunc
	calls  int
	gone   int // guarded by batcher.mu
}

// batchQueue is a key's pending list and its flushers.
type batchQueue struct {
	pending  []*reserveCall
	flushers int
	busy     []bool // the shards that its flushers hold (sharded keys)
	next     int    // where the search for a free shard starts
}

type batcher struct {
	mu     sync.Mutex
	queues map[batchKey]*batchQueue // a key is present while it has flushers
}

// reserveBatched is Reserve through the group commit.
func (s *Store) reserveBatched(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return stock.Reservation{}, err
	}
	c := &reserveCall{ctx: ctx, req: req, done: make(chan reserveResult, 1)}
	s.batch.enqueue(s, batchKey{req.Item, s.shards <= 1}, c)
	select {
	case res := <-c.done:
		return res.r, res.err
	case <-ctx.Done():
		s.batch.abandon(c)
		return stock.Reservation{}, ctx.Err()
	}
}

func (b *batcher) enqueue(s *Store, key batchKey, c *reserveCall) {
	b.mu.Lock()
	if b.queues == nil {
		b.queues = make(map[batchKey]*batchQueue)
	}
	q := b.queues[key]
	if q == nil {
		q = &batchQueue{}
		if !key.exact {
			q.busy = make([]bool, s.shards)
			q.next = rand.IntN(s.shards)
		}
		b.queues[key] = q
	}
	q.pending = append(q.pending, c)
	start := q.flushers == 0
	if !key.exact && q.flushers < s.shards {
		n := len(q.pending)
		start = start || n >= maxReserveBatch || (q.flushers < parallelBatches && n >= parallelPending)
	}
	if start {
		q.flushers++
	}
	b.mu.Unlock()
	if start {
		go b.flush(s, key, q)
	}
}

// abandon records that c's caller gave up. A request not yet taken is
// dropped; a batch whose callers all gave up is cancelled.
func (b *batcher) abandon(c *reserveCall) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c.abandoned = true
	if c.run == nil {
		return
	}
	c.run.gone++
	if c.run.gone == c.run.calls {
		c.run.cancel()
	}
}

func (b *batcher) flush(s *Store, key batchKey, q *batchQueue) {
	for {
		b.settle(q)
		calls, ctx, run := b.take(key, q)
		if calls == nil {
			return
		}
		s.runBatch(ctx, key, run.shard, calls)
		run.cancel()
		if !key.exact {
			b.mu.Lock()
			q.busy[run.shard] = false
			b.mu.Unlock()
		}
	}
}

// settle lets the goroutines that are ready run before a batch is taken,
// as long as they add requests: the callers just answered are about to
// ask again, and should join the next batch rather than leave it to the
// few that came while the last one ran. It yields the processor a few
// times at most, and never waits for a caller that is not ready.
func (b *batcher) settle(q *batchQueue) {
	n := -1
	for range maxSettle {
		runtime.Gosched()
		b.mu.Lock()
		p := len(q.pending)
		b.mu.Unlock()
		if p == n {
			return
		}
		n = p
	}
}

// take removes up to maxReserveBatch live requests from q, with a shard
// for them, or returns nil and retires the flusher when there are none. A
// request whose context is done is dropped, even if its caller has not yet
// noticed, so that it takes nothing.
func (b *batcher) take(key batchKey, q *batchQueue) ([]*reserveCall, context.Context, *batchRun) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var calls []*reserveCall
	n := 0
	for n < len(q.pending) && len(calls) < maxReserveBatch {
		c := q.pending[n]
		n++
		if !c.abandoned && c.ctx.Err() == nil {
			calls = append(calls, c)
		}
	}
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	if len(calls) == 0 {
		q.flushers--
		if q.flushers == 0 {
			delete(b.queues, key)
		}
		return nil, nil, nil
	}
	shard := exactShard
	if !key.exact {
		// A free shard: there are at least as many as flushers.
		for q.busy[q.next] {
			q.next = (q.next + 1) % len(q.busy)
		}
		shard = q.next
		q.busy[shard] = true
		q.next = (q.next + 1) % len(q.busy)
	}
	// The statement serves many callers: it runs on a context of its own.
	ctx, cancel := context.WithCancel(context.Background())
	run := &batchRun{shard: shard, cancel: cancel, calls: len(calls)}
	for _, c := range calls {
		c.run = run
	}
	return calls, ctx, run
}

// pass hands c on to the exact key, unless its caller gave up.
func (b *batcher) pass(s *Store, c *reserveCall) {
	b.mu.Lock()
	c.run = nil
	gone := c.abandoned
	b.mu.Unlock()
	if !gone {
		b.enqueue(s, batchKey{c.req.Item, true}, c)
	}
}

// runBatch runs one batch of key and answers its callers.
func (s *Store) runBatch(ctx context.Context, key batchKey, shard int, calls []*reserveCall) {
	reqs := make([]stock.ReserveRequest, len(calls))
	for i, c := range calls {
		reqs[i] = c.req
	}
	answers, err := s.queryBatch(ctx, s.db, key.item, shard, reqs)
	for i, c := range calls {
		if err != nil {
			c.done <- reserveResult{err: fmt.Errorf("stockpg: reserve %q: %w", c.req.ID, err)}
			continue
		}
		r, next, err := batchOutcome(c.req, shard, answers[i])
		if next {
			s.batch.pass(s, c)
			continue
		}
		c.done <- reserveResult{r, err}
	}
}

// batchRow is the function's answer to one request.
type batchRow struct {
	outcome             string
	item, holder, state *string
	quantity            *int32
	expires             *time.Time
	codes               []string
	due                 *bool
	available           *int64
	reason              *string
}

// queryBatch runs the requests of item, all valid, as one batch on shard
// (exactShard for all of them) through db, and returns one answer per
// request.
func (s *Store) queryBatch(ctx context.Context, db DBTX, item string, shard int, reqs []stock.ReserveRequest) ([]batchRow, error) {
	n := len(reqs)
	var (
		holders = make([]string, 0, n)
		hidx    = make([]int32, n)
		ids     = make([]string, n)
		prev    = make([]int32, n)
		qtys    = make([]int32, n)
		holds   = make([]int64, n)
		last    = make(map[string]int32, n)
	)
	for i, r := range reqs {
		holders = append(holders, r.Holder)
		ids[i] = r.ID
		prev[i] = last[r.ID] // positions are 1-based: 0 is none
		last[r.ID] = int32(i + 1)
		qtys[i] = int32(r.Quantity)
		holds[i] = pgschema.Micros(r.Hold)
	}
	// Every batch locks holder rows in this order.
	slices.Sort(holders)
	holders = slices.Compact(holders)
	for i, r := range reqs {
		pos, _ := slices.BinarySearch(holders, r.Holder)
		hidx[i] = int32(pos + 1)
	}
	rows, err := db.Query(ctx, s.q.reserveBatch, item, int32(shard), holders, hidx, ids, prev, qtys, holds,
		int32(min(reclaimOne*n, reclaimAll)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	answers := make([]batchRow, 0, n)
	for rows.Next() {
		var a batchRow
		if err := rows.Scan(&a.outcome, &a.item, &a.holder, &a.quantity, &a.state, &a.expires, &a.codes,
			&a.due, &a.available, &a.reason); err != nil {
			return nil, err
		}
		answers = append(answers, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(answers) != n {
		return nil, fmt.Errorf("%d answers to %d requests", len(answers), n)
	}
	return answers, nil
}

// batchOutcome turns the function's answer into Reserve's. next says that
// the request is to be asked again of the exact key.
func batchOutcome(req stock.ReserveRequest, shard int, a batchRow) (stock.Reservation, bool, error) {
	refuse := func(e error) (stock.Reservation, bool, error) {
		re := &stock.ReservationError{Item: req.Item, Err: e}
		if a.available != nil {
			re.Available = int(max(*a.available, 0))
		}
		if a.reason != nil {
			re.Reason = *a.reason
		}
		return stock.Reservation{}, false, re
	}
	switch a.outcome {
	case "new", "prior":
		if a.item == nil {
			return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: the reservation vanished", req.ID)
		}
		if *a.item != req.Item || *a.holder != req.Holder || int(*a.quantity) != req.Quantity {
			return stock.Reservation{}, false, fmt.Errorf("%w: %q", stock.ErrConflict, req.ID)
		}
		return stock.Reservation{
			ID: req.ID, Item: req.Item, Holder: req.Holder, Quantity: req.Quantity,
			State:     effectiveState(*a.state, *a.due),
			ExpiresAt: *a.expires,
			Codes:     a.codes,
		}, false, nil
	case "unknown":
		return stock.Reservation{}, false, unknownItem(req.Item)
	case "disabled":
		return refuse(stock.ErrDisabled)
	case "limit":
		return refuse(stock.ErrHolderLimit)
	case "soldout":
		return refuse(stock.ErrSoldOut)
	case "next":
		if shard != exactShard {
			return stock.Reservation{}, true, nil
		}
	}
	return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: unexpected outcome %q", req.ID, a.outcome)
}
