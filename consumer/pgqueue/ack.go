package pgqueue

import (
	"context"
	"fmt"
	"sync"
)

// Group commit of acks. An Ack joins the pending list; while fewer than
// maxAckFlushes statements are under way, it also starts a flusher, which
// takes up to maxAckBatch pending acks, deletes them in one statement,
// tells each caller its result, and goes on until the list is empty. Acks
// that arrive while a statement runs thus wait for it and go together in
// the next one: under load each statement carries many acks, and when idle
// an Ack costs one round trip. Flushers exist only while there is work, so
// a Source needs no Close for them.
const (
	maxAckBatch   = 2048
	maxAckFlushes = 2
)

type acker struct {
	s *Source

	mu       sync.Mutex
	pending  []*ackReq
	flushing int
}

type ackReq struct {
	id, token int64
	done      chan ackResult // buffered: the flusher never waits for the caller

	// Guarded by acker.mu.
	taken     bool // in a statement: its outcome is the database's
	abandoned bool // its caller gave up before it was taken
}

type ackResult struct {
	ok  bool
	err error
}

// ack deletes the row id if it is leased with token and the lease is live,
// and reports whether it did.
func (a *acker) ack(ctx context.Context, id, token int64) (bool, error) {
	r := &ackReq{id: id, token: token, done: make(chan ackResult, 1)}
	a.mu.Lock()
	a.pending = append(a.pending, r)
	if a.flushing < maxAckFlushes {
		a.flushing++
		go a.flush()
	}
	a.mu.Unlock()
	select {
	case res := <-r.done:
		return res.ok, res.err
	case <-ctx.Done():
		a.mu.Lock()
		if !r.taken {
			r.abandoned = true
		}
		a.mu.Unlock()
		return false, ctx.Err()
	}
}

func (a *acker) flush() {
	for {
		batch := a.take()
		if batch == nil {
			return
		}
		a.run(batch)
	}
}

// take removes up to maxAckBatch live requests from the pending list, or
// returns nil and retires the flusher when there are none.
func (a *acker) take() []*ackReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	var batch []*ackReq
	n := 0
	for n < len(a.pending) && len(batch) < maxAckBatch {
		r := a.pending[n]
		n++
		if r.abandoned {
			continue
		}
		r.taken = true
		batch = append(batch, r)
	}
	rest := copy(a.pending, a.pending[n:])
	clear(a.pending[rest:])
	a.pending = a.pending[:rest]
	if len(batch) == 0 {
		a.flushing--
		return nil
	}
	return batch
}

// run deletes one batch. Its statement runs on a context of its own, since
// it serves many callers, bounded by the Source's grace.
func (a *acker) run(batch []*ackReq) {
	s := a.s
	ctx, cancel := context.WithTimeout(context.Background(), s.grace())
	defer cancel()
	ids := make([]int64, len(batch))
	tokens := make([]int64, len(batch))
	for i, r := range batch {
		ids[i], tokens[i] = r.id, r.token
	}
	deleted, err := a.delete(ctx, ids, tokens)
	for _, r := range batch {
		if err != nil {
			r.done <- ackResult{err: err}
			continue
		}
		// A token is spent by the first request that names it: of two
		// Acks of one delivery in a batch, one succeeds.
		_, ok := deleted[leaseKey{r.id, r.token}]
		delete(deleted, leaseKey{r.id, r.token})
		r.done <- ackResult{ok: ok}
	}
}

type leaseKey struct{ id, token int64 }

func (a *acker) delete(ctx context.Context, ids, tokens []int64) (map[leaseKey]struct{}, error) {
	rows, err := a.s.pool.Query(ctx, a.s.q.ack, ids, tokens)
	if err != nil {
		return nil, fmt.Errorf("pgqueue: ack %d messages: %w", len(ids), err)
	}
	deleted := make(map[leaseKey]struct{}, len(ids))
	var k leaseKey
	for rows.Next() {
		if err := rows.Scan(&k.id, &k.token); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pgqueue: ack %d messages: %w", len(ids), err)
		}
		deleted[k] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgqueue: ack %d messages: %w", len(ids), err)
	}
	return deleted, nil
}
