package dlqpg_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

func TestReserveRace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})
	const racers = 16

	for round := range 3 {
		id := string(rune('a' + round))
		require.NoError(t, s.Put(ctx, entry(id, 0)))
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			tokens = make([]string, racers)
			errs   = make([]error, racers)
		)
		for i := range racers {
			wg.Go(func() {
				<-start
				tokens[i], errs[i] = s.Reserve(ctx, id, time.Minute)
			})
		}
		close(start)
		wg.Wait()

		var winner string
		for i, err := range errs {
			if err == nil {
				require.Empty(t, winner, "two winners in round %d", round)
				winner = tokens[i]
				continue
			}
			require.ErrorIs(t, err, dlq.ErrReserved, "round %d", round)
			require.Empty(t, tokens[i])
		}
		require.NotEmpty(t, winner, "no winner in round %d", round)
		require.NoError(t, s.DeleteReserved(ctx, id, winner))
	}
}

func TestReserveLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{})

	_, err := s.Reserve(ctx, "missing", time.Minute)
	require.ErrorIs(t, err, dlq.ErrNotFound)
	require.ErrorIs(t, s.Unreserve(ctx, "missing", "token"), dlq.ErrNotFound)
	require.ErrorIs(t, s.DeleteReserved(ctx, "missing", "token"), dlq.ErrNotFound)

	require.NoError(t, s.Put(ctx, entry("e", 0)))
	// Without a reservation every token is stale, the empty one too.
	require.ErrorIs(t, s.Unreserve(ctx, "e", ""), dlq.ErrReserved)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", ""), dlq.ErrReserved)

	tok, err := s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)
	require.Len(t, tok, 32)
	_, err = s.Reserve(ctx, "e", time.Minute)
	require.ErrorIs(t, err, dlq.ErrReserved)
	require.ErrorIs(t, s.Unreserve(ctx, "e", "not-"+tok), dlq.ErrReserved)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", "not-"+tok), dlq.ErrReserved)

	// Unreserve frees the entry, and the token with it.
	require.NoError(t, s.Unreserve(ctx, "e", tok))
	require.ErrorIs(t, s.Unreserve(ctx, "e", tok), dlq.ErrReserved)
	tok2, err := s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)
	require.NotEqual(t, tok, tok2)

	// A lapsed reservation holds nothing: its token is stale, and the
	// entry can be reserved again.
	expireReservation(t, pool, "e")
	require.ErrorIs(t, s.Unreserve(ctx, "e", tok2), dlq.ErrReserved)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", tok2), dlq.ErrReserved)
	tok3, err := s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", tok2), dlq.ErrReserved)

	// Parking the message again ends the reservation, so the replay that
	// held it cannot delete the newer failure.
	require.NoError(t, s.Put(ctx, entry("e", time.Hour)))
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", tok3), dlq.ErrReserved)
	tok4, err := s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)

	require.NoError(t, s.DeleteReserved(ctx, "e", tok4))
	_, err = s.Get(ctx, "e")
	require.ErrorIs(t, err, dlq.ErrNotFound)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", tok4), dlq.ErrNotFound)
}

// TestReserveLeaseOnDatabaseClock checks the deadline is the database's
// now plus the lease, rounded up to the microsecond.
func TestReserveLeaseOnDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{})
	require.NoError(t, s.Put(ctx, entry("e", 0)))

	var before time.Time
	require.NoError(t, pool.QueryRow(ctx, "SELECT statement_timestamp()").Scan(&before))
	_, err := s.Reserve(ctx, "e", time.Hour+time.Nanosecond)
	require.NoError(t, err)
	var after, until time.Time
	require.NoError(t, pool.QueryRow(ctx,
		"SELECT statement_timestamp(), reserved_until FROM idemq_dead_letters WHERE id = 'e'").Scan(&after, &until))
	require.False(t, until.Before(before.Add(time.Hour+time.Microsecond)), until)
	require.False(t, until.After(after.Add(time.Hour+time.Microsecond)), until)

	// A lease that has already passed reserves nothing for long: the next
	// Reserve takes the entry.
	require.NoError(t, s.Put(ctx, entry("f", 0)))
	_, err = s.Reserve(ctx, "f", -time.Second)
	require.NoError(t, err)
	_, err = s.Reserve(ctx, "f", time.Minute)
	require.NoError(t, err)
}
