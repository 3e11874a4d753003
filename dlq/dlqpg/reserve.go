package dlqpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/idemq/idemq/dlq"

	"github.com/idemq/idemq/internal/pgschema"
)

// Reserve implements [dlq.Store]. It is one conditional UPDATE: of any
// number of concurrent reservations of an entry, one wins. The lease runs
// on the database's clock, in whole microseconds rounded up.
func (s *Store) Reserve(ctx context.Context, id string, lease time.Duration) (string, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails since Go 1.24
	token := hex.EncodeToString(b)
	if err := s.held(ctx, "reserve", s.q.reserve, id, token, pgschema.Micros(lease)); err != nil {
		return "", err
	}
	return token, nil
}

// Unreserve implements [dlq.Store]. It returns [dlq.ErrReserved] unless
// token holds a reservation of the entry that has not run out, and
// [dlq.ErrNotFound] when there is no entry.
func (s *Store) Unreserve(ctx context.Context, id, token string) error {
	return s.held(ctx, "unreserve", s.q.unreserve, id, token)
}

// DeleteReserved implements [dlq.Store]. Like [Store.Unreserve], it
// returns [dlq.ErrReserved] unless token holds a live reservation, and
// [dlq.ErrNotFound] when there is no entry.
func (s *Store) DeleteReserved(ctx context.Context, id, token string) error {
	return s.held(ctx, "delete reserved", s.q.deleteReserved, id, token)
}

// held runs one of the reservation statements, which report whether they
// changed the entry and whether it exists.
func (s *Store) held(ctx context.Context, op, sql string, args ...any) error {
	var done, exists bool
	if err := s.db.QueryRow(ctx, sql, args...).Scan(&done, &exists); err != nil {
		return fmt.Errorf("dlqpg: %s %s: %w", op, args[0], err)
	}
	switch {
	case done:
		return nil
	case exists:
		return dlq.ErrReserved
	default:
		return dlq.ErrNotFound
	}
}
