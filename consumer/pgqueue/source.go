package pgqueue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/pglisten"
	"github.com/idemq/idemq/internal/pgschema"
)

// Source is a [consumer.Source] on one queue of a PostgreSQL table. Its
// methods, and those of its deliveries, are safe for concurrent use, and
// any number of Sources, in any number of processes, may consume one queue
// together.
//
// With [Options.Notify] a Source keeps a connection of its pool for LISTEN
// until [Source.Close].
type Source struct {
	pool *pgxpool.Pool
	opts Options
	q    queries
	vis  int64 // VisibilityTimeout in microseconds, rounded up

	channel string // LISTEN/NOTIFY channel; "" without Notify

	acks *acker
	wake pglisten.Waker
	lis  *pglisten.Listener // nil without Notify

	closeOnce sync.Once
}

var _ consumer.Source = (*Source)(nil)

// New returns a Source that consumes opts.Queue of opts.Table through pool.
// Run [Migrate] first, once, to create the table. With [Options.Notify],
// New starts the background loop that holds the LISTEN connection; call
// [Source.Close] to end it.
func New(pool *pgxpool.Pool, opts Options) (*Source, error) {
	if pool == nil {
		return nil, errors.New("pgqueue: nil pool")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Source{
		pool: pool,
		opts: o,
		q:    newQueries(t, o.Notify),
		vis:  pgschema.Micros(o.VisibilityTimeout),
	}
	s.acks = &acker{s: s}
	if o.Notify {
		s.channel = channelName(t, o.Queue)
		s.lis = pglisten.Start(pool, pglisten.Config{
			Channel:  s.channel,
			Throttle: o.NotifyThrottle,
			Logger:   o.Logger,
			Name:     "pgqueue",
			Owner:    "Source",
			Wake:     s.wake.Wake,
		})
	}
	return s, nil
}

// Close ends the LISTEN connection of a Source with [Options.Notify] and
// waits for its background loop to return. Fetch goes on working, by
// polling. Close the Source before its pool. It is safe to call more than
// once, and always returns nil.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		if s.lis != nil {
			s.lis.Stop()
		}
	})
	return nil
}

// Fetch leases up to max messages; see [consumer.Source].
//
// It leases the ready rows of the queue, oldest visible first, in one
// statement, skipping rows that other fetches are taking. When there are
// none it sleeps until the earliest lease end or Nack delay it knows of, a
// notification (with [Options.Notify]), a Nack through this Source, or
// [Options.PollInterval], whichever is first, and looks again.
//
// Once started, the statement that leases rows is not interrupted when ctx
// ends (cutting it off could leave rows leased to nobody), only after a
// grace of the visibility timeout, and at least 10s, more. If ctx ended
// while it ran, the rows it leased are put back as they were and Fetch
// returns ctx's error.
func (s *Source) Fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	if max <= 0 {
		return nil, fmt.Errorf("pgqueue: Fetch max must be positive, got %d", max)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	busy := 0 // consecutive looks that found ready rows all locked by others
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Taken before looking, so that a wake-up that comes while we
		// look is not lost.
		wake := s.wake.Wait()
		ds, err := s.fetch(ctx, max)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		wait, err := s.idle(ctx, &busy)
		if err != nil {
			return nil, err
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}

// fetch runs the fetch statement once.
func (s *Source) fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	// The statement runs to its end even if ctx ends meanwhile, but not
	// forever: it is cut off a grace after ctx ends.
	qctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-time.After(s.grace()):
			cancel()
		case <-qctx.Done(): // fetch returned
		}
	})
	defer stop()
	// The lease is measured from the statement's start on the database's
	// clock, which comes after this: the local deadline never outlasts it.
	start := time.Now()
	rows, err := s.pool.Query(qctx, s.q.fetch, s.opts.Queue, max, s.vis)
	if err != nil {
		return nil, errors.Join(ctx.Err(), fmt.Errorf("pgqueue: fetch from %s: %w", s.opts.Queue, err))
	}
	type fetched struct {
		d       *delivery
		visible time.Time // before the lease: the batch's order
	}
	var (
		got                []fetched
		id, token          int64
		attempts           int32
		msgID, key         string
		body               []byte
		headers            map[string]string
		enqueued, oldVisib time.Time
	)
	deadline := start.Add(s.opts.VisibilityTimeout)
	_, err = pgx.ForEachRow(rows, []any{&id, &token, &msgID, &key, &body, &headers, &attempts, &enqueued, &oldVisib}, func() error {
		got = append(got, fetched{
			d: &delivery{
				s:     s,
				id:    id,
				token: token,
				msg: consumer.Message{
					ID:         msgID,
					Key:        key,
					Body:       body,
					Headers:    headers,
					Attempt:    int(attempts),
					EnqueuedAt: enqueued,
				},
				deadline: deadline,
			},
			visible: oldVisib,
		})
		body, headers = nil, nil // scanned into fresh values for the next row
		return nil
	})
	if err != nil {
		// The statement may have committed before reading its rows
		// failed; the leases it took then end on their own.
		return nil, errors.Join(ctx.Err(), fmt.Errorf("pgqueue: fetch from %s: %w", s.opts.Queue, err))
	}
	if ctx.Err() != nil {
		if len(got) > 0 {
			ids := make([]int64, len(got))
			tokens := make([]int64, len(got))
			visible := make([]time.Time, len(got))
			for i, f := range got {
				ids[i], tokens[i], visible[i] = f.d.id, f.d.token, f.visible
			}
			if _, err := s.pool.Exec(qctx, s.q.unfetch, ids, tokens, visible); err != nil {
				return nil, errors.Join(ctx.Err(), fmt.Errorf("pgqueue: put back %d messages leased as the fetch was cancelled; they are delivered again when their lease ends: %w", len(got), err))
			}
		}
		return nil, ctx.Err()
	}
	slices.SortFunc(got, func(a, b fetched) int {
		if c := a.visible.Compare(b.visible); c != 0 {
			return c
		}
		return cmp.Compare(a.d.id, b.d.id)
	})
	out := make([]consumer.Delivery, len(got))
	for i, f := range got {
		out[i] = f.d
	}
	return out, nil
}

// grace bounds the statements that run on a context of their own: a fetch
// statement after its caller's context ended, and grouped acks. It is the
// visibility timeout, after which every lease such a statement deals with
// has ended anyway, but at least 10s, so that short leases do not cut off
// statements that are merely slow.
func (s *Source) grace() time.Duration {
	return max(s.opts.VisibilityTimeout, 10*time.Second)
}

// idle returns how long a Fetch that found nothing should sleep: until the
// earliest row becomes visible, at most PollInterval. Ready rows that
// another fetch or transaction has locked are looked at again after a wait
// that doubles from 1ms while they stay locked.
func (s *Source) idle(ctx context.Context, busy *int) (time.Duration, error) {
	var us pgtype.Int8
	if err := s.pool.QueryRow(ctx, s.q.next, s.opts.Queue).Scan(&us); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("pgqueue: fetch from %s: next visible message: %w", s.opts.Queue, err)
	}
	poll := s.opts.PollInterval
	switch {
	case !us.Valid: // empty queue
		*busy = 0
		return poll, nil
	case us.Int64 > 0:
		*busy = 0
		return min(poll, time.Duration(us.Int64)*time.Microsecond), nil
	default:
		wait := min(poll, time.Millisecond<<min(*busy, 16))
		*busy++
		return wait, nil
	}
}
