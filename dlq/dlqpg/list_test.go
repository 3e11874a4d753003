package dlqpg_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

// listIDs pages through f at limit a page and returns the IDs in order and
// the number of pages.
func listIDs(t *testing.T, s *dlqpg.Store, f dlq.Filter, limit int, between func()) ([]string, int) {
	t.Helper()
	var (
		ids   []string
		pages int
		cur   string
	)
	for {
		p, err := s.List(t.Context(), f, cur, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(p.Entries), limit)
		pages++
		for _, e := range p.Entries {
			ids = append(ids, e.ID)
		}
		if p.Next == "" {
			return ids, pages
		}
		require.Len(t, p.Entries, limit, "a page with a Next must be full")
		require.Less(t, pages, 1000, "cursor never ends")
		if between != nil {
			between()
		}
		cur = p.Next
	}
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})

	// 21 entries over 7 instants, so each instant has three ties that the
	// ID orders bytewise ("B" before "a", unlike most collations).
	var want []string
	for i := range 7 {
		for _, suffix := range []string{"B", "a", "b"} {
			id := fmt.Sprintf("%02d-%s", 6-i, suffix) // IDs run against time
			want = append(want, id)
			require.NoError(t, s.Put(ctx, entry(id, time.Duration(i)*time.Microsecond)))
		}
	}

	for _, limit := range []int{1, 2, 3, 5, 7, 20, 21, 22, 1000} {
		got, pages := listIDs(t, s, dlq.Filter{}, limit, nil)
		require.Equal(t, want, got, "limit %d", limit)
		require.Equal(t, (len(want)+limit-1)/limit, pages, "limit %d: a full last page has no Next", limit)
	}

	// Filters combine with the cursor.
	got, _ := listIDs(t, s, dlq.Filter{Since: base.Add(2 * time.Microsecond), Until: base.Add(5 * time.Microsecond)}, 2, nil)
	require.Equal(t, want[6:15], got)

	// An empty store, or filter, lists one empty page.
	p, err := s.List(ctx, dlq.Filter{Source: "nowhere"}, "", 10)
	require.NoError(t, err)
	require.Empty(t, p.Entries)
	require.Empty(t, p.Next)
}

// TestListWhileChanging deletes the cursor's own entry and adds entries
// before and after it between pages: every entry present throughout is
// listed once.
func TestListWhileChanging(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})
	for i := range 20 {
		require.NoError(t, s.Put(ctx, entry(fmt.Sprintf("e%02d", i), time.Duration(i)*time.Second)))
	}

	var lastSeen string
	n := 0
	cur := ""
	var got []string
	for {
		p, err := s.List(ctx, dlq.Filter{}, cur, 3)
		require.NoError(t, err)
		for _, e := range p.Entries {
			got = append(got, e.ID)
			lastSeen = e.ID
		}
		if p.Next == "" {
			break
		}
		// The cursor's entry goes; one appears behind the cursor and one
		// ahead of it.
		require.NoError(t, s.Delete(ctx, lastSeen))
		require.NoError(t, s.Put(ctx, entry(fmt.Sprintf("behind%02d", n), -time.Hour)))
		require.NoError(t, s.Put(ctx, entry(fmt.Sprintf("new%02d", n), time.Hour+time.Duration(n)*time.Second)))
		n++
		cur = p.Next
	}
	seen := map[string]bool{}
	for _, id := range got {
		require.False(t, seen[id], "%s listed twice", id)
		seen[id] = true
		require.NotContains(t, id, "behind", "an entry added behind the cursor was listed")
	}
	for i := range 20 {
		require.True(t, seen[fmt.Sprintf("e%02d", i)], "e%02d skipped", i)
	}
}

func TestListBadArguments(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})
	for _, limit := range []int{0, -1} {
		_, err := s.List(ctx, dlq.Filter{}, "", limit)
		require.ErrorContains(t, err, "limit must be positive")
	}
	for _, cur := range []string{"!", "AQ", "AgAAAAAAAAAAaWQ", "not base64 at all"} {
		_, err := s.List(ctx, dlq.Filter{}, cur, 10)
		require.ErrorContains(t, err, "invalid cursor", cur)
	}
}

// TestFilterBoundsBetweenMicroseconds checks bounds with a part finer than
// PostgreSQL keeps select what Filter.Match selects of the stored entries.
func TestFilterBoundsBetweenMicroseconds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, dlqpg.Options{})
	for i := range 3 {
		require.NoError(t, s.Put(ctx, entry(fmt.Sprintf("e%d", i), time.Duration(i)*time.Microsecond)))
	}
	var stored []dlq.Entry
	p, err := s.List(ctx, dlq.Filter{}, "", 10)
	require.NoError(t, err)
	stored = p.Entries
	require.Len(t, stored, 3)

	for _, f := range []dlq.Filter{
		{Since: base.Add(500 * time.Nanosecond)},
		{Since: base.Add(1500 * time.Nanosecond)},
		{Until: base.Add(500 * time.Nanosecond)},
		{Until: base.Add(1500 * time.Nanosecond)},
		{Since: base.Add(1 * time.Nanosecond), Until: base.Add(2001 * time.Nanosecond)},
	} {
		var want []string
		for _, e := range stored {
			if f.Match(e) {
				want = append(want, e.ID)
			}
		}
		got, _ := listIDs(t, s, f, 10, nil)
		require.Equal(t, want, got, "%+v", f)
		n, err := s.Count(ctx, f)
		require.NoError(t, err)
		require.Equal(t, len(want), n, "%+v", f)
	}
}
