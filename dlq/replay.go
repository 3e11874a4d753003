package dlq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
)

// ReplayResult counts what [Replay] did.
type ReplayResult struct {
	Replayed int // entries published and removed
	Skipped  int // entries another replay held, or that vanished meanwhile
}

// replayLease bounds how long a crashed Replay keeps an entry from other
// replays.
const replayLease = time.Minute

// Replay sends the entries that match f back through pub, oldest first,
// and removes them from the store. Each message keeps its ID, Key, Body and
// Headers; its Attempt starts again from 1, and EnqueuedAt is the replay's
// time.
//
// Each entry is reserved before it is published and deleted after, so
// concurrent replays publish it once, and replaying again later publishes
// nothing that was already replayed. If the process dies between publish
// and delete, the reservation lapses and a later replay publishes the
// entry again: consumers dedupe it by ID. When a publish fails, Replay
// stops and returns the error with what it did so far; the failed entry
// stays parked.
//
// A broker that deduplicates by message ID itself (NATS JetStream's
// Nats-Msg-Id window) would drop a replay that falls within its window:
// replay through a publisher that does not set it (the jetstream driver's
// PublisherOptions.NoDedupe).
func Replay(ctx context.Context, store Store, pub consumer.Publisher, f Filter) (ReplayResult, error) {
	var res ReplayResult
	cursor := ""
	for {
		page, err := store.List(ctx, f, cursor, 100)
		if err != nil {
			return res, fmt.Errorf("dlq: replay: listing: %w", err)
		}
		for _, e := range page.Entries {
			token, err := store.Reserve(ctx, e.ID, replayLease)
			if errors.Is(err, ErrReserved) || errors.Is(err, ErrNotFound) {
				res.Skipped++
				continue
			}
			if err != nil {
				return res, fmt.Errorf("dlq: replay: reserving %s: %w", e.ID, err)
			}
			msg := e.Message
			msg.Attempt = 0
			msg.EnqueuedAt = time.Time{}
			if err := pub.Publish(ctx, msg); err != nil {
				if uerr := store.Unreserve(context.WithoutCancel(ctx), e.ID, token); uerr != nil {
					err = errors.Join(err, fmt.Errorf("unreserving: %w", uerr))
				}
				return res, fmt.Errorf("dlq: replay: publishing %s (message %q): %w", e.ID, msg.ID, err)
			}
			res.Replayed++
			if err := store.DeleteReserved(context.WithoutCancel(ctx), e.ID, token); err != nil && !errors.Is(err, ErrReserved) && !errors.Is(err, ErrNotFound) {
				// The message is back on its queue; the entry stays until its
				// reservation lapses and may be replayed once more.
				return res, fmt.Errorf("dlq: replay: removing %s after publishing it: %w", e.ID, err)
			}
		}
		if page.Next == "" {
			return res, nil
		}
		cursor = page.Next
	}
}
