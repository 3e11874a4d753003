package dlq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
)

// A consumer whose handler runs behind the dead-letter middleware. A
// message that does not decode will not decode on a redelivery either, so
// it is parked after its first attempt and acked; the healthy message
// behind it is handled as usual, and the queue is left empty.
func ExampleMiddleware() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = q.Publish(ctx,
		consumer.Message{ID: "order-1", Body: []byte(`{"order":`)},
		consumer.Message{ID: "order-2", Body: []byte(`{"order":2}`)},
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	park, err := dlq.Middleware(dlq.Options{Sink: store, Source: "orders", MaxAttempts: 5, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	handle := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		var order struct{ Order int }
		if err := json.Unmarshal(msg.Body, &order); err != nil {
			return dlq.Undecodable(err)
		}
		fmt.Println("processed order", order.Order)
		return nil
	})
	// Stop consuming once both messages are settled: Run drains and returns.
	settled := 0
	stopAfterTwo := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			err := next.Handle(ctx, msg)
			if settled++; settled == 2 {
				cancel()
			}
			return err
		})
	}

	c, err := consumer.New(q, consumer.Chain(stopAfterTwo, park)(handle),
		consumer.Config{MaxInFlight: 1, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run:", c.Run(ctx))
	fmt.Printf("left in queue: %+v\n", q.Stats())

	page, err := store.List(context.Background(), dlq.Filter{}, "", 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range page.Entries {
		fmt.Printf("parked %s from %s: reason=%s attempts=%d\n", e.Message.ID, e.Source, e.Reason, e.Attempts)
		fmt.Println("error:", e.Error)
	}

	// Output:
	// processed order 2
	// run: <nil>
	// left in queue: {Ready:0 Delayed:0 Leased:0}
	// parked order-1 from orders: reason=undecodable attempts=1
	// error: permanent: undecodable message: unexpected end of JSON input
}

// Two messages parked by hand (as the middleware would), replayed to their
// queue once the bug that parked them is fixed. Replay removes what it
// publishes, so running it again publishes nothing.
func ExampleReplay() {
	ctx := context.Background()
	store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	failedAt := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, id := range []string{"order-1", "order-2"} {
		err := store.Put(ctx, dlq.Entry{
			ID:           dlq.EntryID("orders", id),
			Message:      consumer.Message{ID: id, Body: fmt.Appendf(nil, `{"order":%d}`, i+1), Attempt: 5},
			Source:       "orders",
			Reason:       dlq.ReasonAttemptsExhausted,
			Error:        "ledger: connection refused",
			Attempts:     5,
			LastFailedAt: failedAt.Add(time.Duration(i) * time.Minute),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}

	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := dlq.Replay(ctx, store, q, dlq.Filter{Source: "orders"})
	fmt.Printf("replay: %+v %v\n", res, err)
	fmt.Printf("queue: %+v\n", q.Stats())
	left, err := store.Count(ctx, dlq.Filter{})
	fmt.Println("left parked:", left, err)

	res, err = dlq.Replay(ctx, store, q, dlq.Filter{Source: "orders"})
	fmt.Printf("again: %+v %v\n", res, err)

	// The messages come back oldest first, as first deliveries.
	ds, err := q.Fetch(ctx, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range ds {
		fmt.Printf("%s attempt %d\n", d.Message().ID, d.Message().Attempt)
	}

	// Output:
	// replay: {Replayed:2 Skipped:0} <nil>
	// queue: {Ready:2 Delayed:0 Leased:0}
	// left parked: 0 <nil>
	// again: {Replayed:0 Skipped:0} <nil>
	// order-1 attempt 1
	// order-2 attempt 1
}
