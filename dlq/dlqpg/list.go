package dlqpg

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/internal/keyset"
)

// where is a WHERE clause under construction, with its arguments.
type where struct {
	conds []string
	args  []any
}

// add appends cond, in which each ? stands for the next of args.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// sql is the clause, empty when there is no condition.
func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// filterWhere puts f in SQL. Only the fields that are set become
// conditions, so each combination is a statement of its own that the
// planner can match to an index.
func filterWhere(f dlq.Filter) *where {
	w := &where{}
	if f.Reason != "" {
		w.add("reason = ?", string(f.Reason))
	}
	if f.Source != "" {
		w.add("source = ?", f.Source)
	}
	if !f.Since.IsZero() {
		w.add("last_failed_at >= ?", ceilMicro(f.Since))
	}
	if !f.Until.IsZero() {
		w.add("last_failed_at < ?", ceilMicro(f.Until))
	}
	return w
}

// ceilMicro rounds t up to the microsecond. Stored times are whole
// microseconds, so for them t <= x and x < t mean the same with t rounded
// up, and the filter selects exactly what [dlq.Filter.Match] selects of the
// entries as Get returns them. (pgx would truncate t instead.)
func ceilMicro(t time.Time) time.Time {
	if u := t.Truncate(time.Microsecond); !u.Equal(t) {
		return u.Add(time.Microsecond)
	}
	return t
}

// A cursor is the position after an entry: its LastFailedAt in
// microseconds since the Unix epoch (the column's resolution, so the
// position is exact) and its ID.
type position struct {
	at time.Time
	id string
}

func encodeCursor(e dlq.Entry) string { return keyset.Encode(e.LastFailedAt.UnixMicro(), e.ID) }

func decodeCursor(c string) (position, error) {
	us, id, ok := keyset.Decode(c)
	if !ok {
		return position{}, fmt.Errorf("dlqpg: invalid cursor %q", c)
	}
	return position{at: time.UnixMicro(us), id: id}, nil
}

// List implements [dlq.Store]. It pages by keyset on (last_failed_at, id),
// which the table's index serves, so a page costs the same wherever it is
// and entries added or removed meanwhile shift nothing.
func (s *Store) List(ctx context.Context, f dlq.Filter, cursor string, limit int) (dlq.Page, error) {
	if limit <= 0 {
		return dlq.Page{}, fmt.Errorf("dlqpg: list limit must be positive, got %d", limit)
	}
	w := filterWhere(f)
	if cursor != "" {
		p, err := decodeCursor(cursor)
		if err != nil {
			return dlq.Page{}, err
		}
		w.add("(last_failed_at, id) > (?, ?)", p.at, p.id)
	}
	// One row more than asked tells whether there is a next page.
	fetch := int64(limit)
	if fetch < math.MaxInt64 {
		fetch++
	}
	w.args = append(w.args, fetch)
	sql := "SELECT " + columns + " FROM " + s.q.table + w.sql() +
		" ORDER BY last_failed_at, id LIMIT $" + strconv.Itoa(len(w.args))

	rows, err := s.db.Query(ctx, sql, w.args...)
	if err != nil {
		return dlq.Page{}, fmt.Errorf("dlqpg: list: %w", err)
	}
	defer rows.Close()
	entries := make([]dlq.Entry, 0, min(limit, 256))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return dlq.Page{}, fmt.Errorf("dlqpg: list: %w", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return dlq.Page{}, fmt.Errorf("dlqpg: list: %w", err)
	}
	var page dlq.Page
	if len(entries) > limit {
		entries = entries[:limit]
		page.Next = encodeCursor(entries[limit-1])
	}
	page.Entries = entries
	return page, nil
}
