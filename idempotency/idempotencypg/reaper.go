package idempotencypg

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Reaper defaults.
const (
	// DefaultReapBatch is the batch size used when a batch of zero or less
	// is given.
	DefaultReapBatch = 1000
	// DefaultReapInterval is RunReaper's pause when an interval of zero or
	// less is given.
	DefaultReapInterval = time.Minute
)

// DeleteExpired deletes up to batch rows whose lease or retention has run
// out, and returns how many it deleted. Those keys are already absent to
// Claim; deleting them only reclaims space. Rows locked by a concurrent
// claim are skipped, so the reaper never waits on, or delays, the store's
// users. A batch of zero or less means [DefaultReapBatch].
func (s *Store) DeleteExpired(ctx context.Context, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	tag, err := s.db.Exec(ctx, s.q.deleteExpired, batch)
	if err != nil {
		return 0, fmt.Errorf("idempotencypg: delete expired keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RunReaper calls [Store.DeleteExpired] until ctx is done: batch after
// batch while batches come back full, then again after interval. Each
// batch is its own statement, so locks are held briefly however many rows
// have expired.
//
// A failed batch is logged to [Options.Logger] and tried again after
// interval. RunReaper returns ctx's error when ctx is done; an interval or
// batch of zero or less means [DefaultReapInterval] or
// [DefaultReapBatch]. Run one reaper per table or several: they skip each
// other's rows.
func (s *Store) RunReaper(ctx context.Context, interval time.Duration, batch int) error {
	if interval <= 0 {
		interval = DefaultReapInterval
	}
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	return runReaper(ctx, interval, s.logger, "idempotencypg: deleting expired keys failed; retrying after the interval",
		func(ctx context.Context) (int64, error) { return s.DeleteExpired(ctx, batch) }, int64(batch))
}

// runReaper runs del at once and then every interval, repeating it without
// waiting while it deletes full batches.
func runReaper(ctx context.Context, interval time.Duration, logger *slog.Logger, failMsg string,
	del func(context.Context) (int64, error), batch int64,
) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		for {
			n, err := del(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				logger.LogAttrs(ctx, slog.LevelWarn, failMsg,
					slog.Duration("interval", interval), slog.Any("error", err))
				break
			}
			if n < batch {
				break
			}
		}
		timer.Reset(interval)
	}
}
