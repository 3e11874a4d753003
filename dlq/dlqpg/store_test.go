package dlqpg_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})

	full := entry("full", 0)
	full.Message.Body = []byte{0, 1, 0xff, 0xfe, 0} // any bytes
	full.Message.Headers = map[string]string{
		"":            "empty name",
		"empty value": "",
		"unicode":     "日本語 ✓ \"quoted\" <html> & \\",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	full.Error = "line one\nline two"

	bare := dlq.Entry{ID: "bare", LastFailedAt: base} // nil everything, zero times

	empty := entry("empty", 0) // empty, not nil
	empty.Message.Body = []byte{}
	empty.Message.Headers = map[string]string{}
	empty.ErrorChain = []string{}

	for _, e := range []dlq.Entry{full, bare, empty} {
		require.NoError(t, s.Put(ctx, e))
		got, err := s.Get(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, e, got, e.ID)
	}

	got, err := s.Get(ctx, "bare")
	require.NoError(t, err)
	require.Nil(t, got.Message.Body)
	require.Nil(t, got.Message.Headers)
	require.Nil(t, got.ErrorChain)
	require.True(t, got.Message.EnqueuedAt.IsZero())
	require.True(t, got.FirstFailedAt.IsZero())

	got, err = s.Get(ctx, "empty")
	require.NoError(t, err)
	require.NotNil(t, got.Message.Body)
	require.NotNil(t, got.Message.Headers)
	require.NotNil(t, got.ErrorChain)
}

func TestTimesInUTCToTheMicrosecond(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})
	e := entry("e", 0)
	e.LastFailedAt = time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 5*3600))
	require.NoError(t, s.Put(ctx, e))
	got, err := s.Get(ctx, "e")
	require.NoError(t, err)
	require.Equal(t, time.UTC, got.LastFailedAt.Location())
	require.True(t, got.LastFailedAt.Equal(e.LastFailedAt.Truncate(time.Microsecond)), got.LastFailedAt)
}

func TestPutRefusesWhatItCannotStoreExactly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{})

	require.ErrorContains(t, s.Put(ctx, dlq.Entry{LastFailedAt: base}), "without an ID")

	bad := map[string]func(*dlq.Entry){
		"header value not UTF-8": func(e *dlq.Entry) { e.Message.Headers = map[string]string{"k": "\xff"} },
		"header name not UTF-8":  func(e *dlq.Entry) { e.Message.Headers = map[string]string{"\xff": "v"} },
		"header with NUL":        func(e *dlq.Entry) { e.Message.Headers = map[string]string{"k": "a\x00b"} },
		"error not UTF-8":        func(e *dlq.Entry) { e.Error = "\xff" },
		"message ID with NUL":    func(e *dlq.Entry) { e.Message.ID = "a\x00b" },
		"error chain not UTF-8":  func(e *dlq.Entry) { e.ErrorChain = []string{"ok", "\xfe"} },
	}
	for name, spoil := range bad {
		e := entry("bad", 0)
		spoil(&e)
		require.Error(t, s.Put(ctx, e), name)
	}
	require.Zero(t, rowCount(t, pool, "idemq_dead_letters"))
}

func TestPutReplaces(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{})

	first := entry("e", 0)
	require.NoError(t, s.Put(ctx, first))

	// A later failure replaces everything but the earlier first failure.
	second := entry("e", time.Hour)
	second.Message.Attempt = 9
	second.Attempts = 9
	second.Reason = dlq.ReasonPermanent
	second.Error = "later"
	second.ErrorChain = nil
	second.Message.Headers = nil
	require.NoError(t, s.Put(ctx, second))
	got, err := s.Get(ctx, "e")
	require.NoError(t, err)
	want := second
	want.FirstFailedAt = first.FirstFailedAt
	require.Equal(t, want, got)
	require.Equal(t, 1, rowCount(t, pool, "idemq_dead_letters"))

	// An earlier first failure wins; an unknown one does not erase it.
	third := entry("e", 2*time.Hour)
	third.FirstFailedAt = first.FirstFailedAt.Add(-time.Minute)
	require.NoError(t, s.Put(ctx, third))
	got, err = s.Get(ctx, "e")
	require.NoError(t, err)
	require.Equal(t, third.FirstFailedAt, got.FirstFailedAt)
	fourth := entry("e", 3*time.Hour)
	fourth.FirstFailedAt = time.Time{}
	require.NoError(t, s.Put(ctx, fourth))
	got, err = s.Get(ctx, "e")
	require.NoError(t, err)
	require.Equal(t, third.FirstFailedAt, got.FirstFailedAt)
	require.Equal(t, fourth.LastFailedAt, got.LastFailedAt)

	// An entry first stored without a first failure takes the new one.
	unknown := entry("u", 0)
	unknown.FirstFailedAt = time.Time{}
	require.NoError(t, s.Put(ctx, unknown))
	require.NoError(t, s.Put(ctx, entry("u", time.Hour)))
	got, err = s.Get(ctx, "u")
	require.NoError(t, err)
	require.Equal(t, entry("u", time.Hour).FirstFailedAt, got.FirstFailedAt)
}

func TestGetDelete(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})

	_, err := s.Get(ctx, "missing")
	require.ErrorIs(t, err, dlq.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "missing"), dlq.ErrNotFound)

	require.NoError(t, s.Put(ctx, entry("e", 0)))
	// Delete ignores reservations: it is the operator's tool.
	_, err = s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "e"))
	_, err = s.Get(ctx, "e")
	require.ErrorIs(t, err, dlq.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "e"), dlq.ErrNotFound)
}

func TestCountPurge(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{})

	// 30 entries, one a minute: sources alternate, every third permanent.
	for i := range 30 {
		e := entry(string(rune('a'+i/26))+string(rune('a'+i%26)), time.Duration(i)*time.Minute)
		if i%2 == 1 {
			e.Source = "payments"
		}
		if i%3 == 0 {
			e.Reason = dlq.ReasonPermanent
		}
		require.NoError(t, s.Put(ctx, e))
	}
	// The first reserved entry is purged too.
	_, err := s.Reserve(ctx, "aa", time.Minute)
	require.NoError(t, err)

	cases := []struct {
		name string
		f    dlq.Filter
		want int
	}{
		{"all", dlq.Filter{}, 30},
		{"source", dlq.Filter{Source: "payments"}, 15},
		{"reason", dlq.Filter{Reason: dlq.ReasonPermanent}, 10},
		{"source and reason", dlq.Filter{Source: "orders", Reason: dlq.ReasonPermanent}, 5},
		{"since", dlq.Filter{Since: base.Add(10 * time.Minute)}, 20},
		{"until", dlq.Filter{Until: base.Add(10 * time.Minute)}, 10},
		{"window", dlq.Filter{Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, 10},
		{"everything at once", dlq.Filter{
			Source: "orders", Reason: dlq.ReasonPermanent,
			Since: base, Until: base.Add(13 * time.Minute),
		}, 3}, // 0, 6, 12
		{"no match", dlq.Filter{Source: "nowhere"}, 0},
	}
	for _, c := range cases {
		n, err := s.Count(ctx, c.f)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, n, c.name)
	}

	n, err := s.Purge(ctx, dlq.Filter{Source: "orders", Reason: dlq.ReasonPermanent})
	require.NoError(t, err)
	require.Equal(t, 5, n)
	n, err = s.Purge(ctx, dlq.Filter{Source: "orders", Reason: dlq.ReasonPermanent})
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = s.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 25, n)
	n, err = s.Purge(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 25, n)
	require.Zero(t, rowCount(t, pool, "idemq_dead_letters"))
}
