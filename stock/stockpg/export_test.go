package stockpg

import (
	"context"

	"github.com/idemq/idemq/stock"
)

// ExactShard makes RunBatch lock every shard of the item.
const ExactShard = exactShard

// RunBatch runs reqs, valid requests of one item, as one batch on shard,
// as the group commit would, and returns each one's answer. Requests that
// the shard cannot serve go on to the exact key, as in Reserve.
func RunBatch(s *Store, shard int, reqs []stock.ReserveRequest) ([]stock.Reservation, []error) {
	calls := make([]*reserveCall, len(reqs))
	for i, r := range reqs {
		r, err := r.Validate()
		if err != nil {
			panic(err)
		}
		calls[i] = &reserveCall{ctx: context.Background(), req: r, done: make(chan reserveResult, 1)}
	}
	s.runBatch(context.Background(), batchKey{reqs[0].Item, shard == exactShard}, shard, calls)
	rs := make([]stock.Reservation, len(reqs))
	errs := make([]error, len(reqs))
	for i, c := range calls {
		res := <-c.done
		rs[i], errs[i] = res.r, res.err
	}
	return rs, errs
}

// ParallelBatches and ParallelPending bound the batches of a sharded item
// that run at once: another starts while ParallelPending Reserves wait.
const (
	ParallelBatches = parallelBatches
	ParallelPending = parallelPending
)

// PendingReserves is how many Reserves wait for a batch to take them.
func PendingReserves(s *Store) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	n := 0
	for _, q := range s.batch.queues {
		for _, c := range q.pending {
			if !c.abandoned {
				n++
			}
		}
	}
	return n
}

// ReserveStep runs one step of a Reserve on its own through db: on shard,
// or on every shard for ExactShard. next says that the exact step must
// follow.
func ReserveStep(ctx context.Context, s *Store, db DBTX, req stock.ReserveRequest, shard int) (r stock.Reservation, next bool, err error) {
	req, err = req.Validate()
	if err != nil {
		return stock.Reservation{}, false, err
	}
	answers, err := s.queryBatch(ctx, db, req.Item, shard, []stock.ReserveRequest{req})
	if err != nil {
		return stock.Reservation{}, false, err
	}
	return batchOutcome(req, shard, answers[0])
}
