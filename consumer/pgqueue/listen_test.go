package pgqueue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// TestListenReconnects kills the Source's LISTEN connection on the server:
// the Source logs it, connects again, and wakes for notifications again.
// The poll interval is longer than the test, so every delivery here comes
// from a notification.
func TestListenReconnects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	logs := &recordHandler{}
	queue := "reconnect-" + randomHex()
	opts := pgqueue.Options{Queue: queue, Notify: true, PollInterval: time.Hour, Logger: slog.New(logs)}
	src, pub, pool := newQueue(t, opts)

	pid := listenerPID(t, pool, queue, 0)
	roundTrip(t, src, pub, "before")

	var killed bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed))
	require.True(t, killed)
	newPID := listenerPID(t, pool, queue, pid)
	require.NotEqual(t, pid, newPID)
	require.True(t, logs.has("pgqueue: LISTEN connection failed"), "logged: %v", logs.messages())

	roundTrip(t, src, pub, "after")
	require.NoError(t, src.Close())
	require.Eventually(t, func() bool { return listenerGone(t, pool, queue) }, 10*time.Second, 10*time.Millisecond,
		"Close left the LISTEN connection open")
}

// roundTrip starts a Fetch, lets it settle into waiting, publishes, and
// requires the Fetch to return the message well before the poll interval.
func roundTrip(t *testing.T, src *pgqueue.Source, pub *pgqueue.Publisher, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res := make(chan []consumer.Delivery, 1)
	go func() {
		ds, _ := src.Fetch(ctx, 1)
		res <- ds
	}()
	time.Sleep(100 * time.Millisecond) // let the Fetch start waiting
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: id}))
	ds := <-res
	require.Len(t, ds, 1, "the waiting Fetch did not wake for the notification")
	require.Equal(t, id, ds[0].Message().ID)
	require.NoError(t, ds[0].Ack(ctx))
}

// listenerPID waits for the backend that listens on queue's channel, other
// than not, and returns its pid.
func listenerPID(t *testing.T, pool *pgxpool.Pool, queue string, not int) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		err := pool.QueryRow(t.Context(), `
SELECT pid FROM pg_stat_activity
WHERE query LIKE 'LISTEN %' AND strpos(query, $1) > 0 AND pid <> $2`, queue, not).Scan(&pid)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "no backend LISTENs for %s", queue)
	return pid
}

func listenerGone(t *testing.T, pool *pgxpool.Pool, queue string) bool {
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `
SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND strpos(query, $1) > 0`, queue).Scan(&n))
	return n == 0
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// recordHandler is a slog.Handler that keeps the messages it is given.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}

func (h *recordHandler) has(prefix string) bool {
	return slices.ContainsFunc(h.messages(), func(m string) bool { return strings.HasPrefix(m, prefix) })
}
