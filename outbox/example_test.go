package outbox_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/outbox"
)

// Writing an order and the event that announces it in one transaction:
// both commit, or neither does.
func ExampleWriter_Enqueue() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	opts := outbox.Options{Notify: true}
	if err := outbox.Migrate(ctx, pool, opts); err != nil {
		log.Fatal(err)
	}
	w, err := outbox.NewWriter(opts)
	if err != nil {
		log.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'paid' WHERE id = $1`, 42); err != nil {
		log.Fatal(err)
	}
	err = w.Enqueue(ctx, tx, outbox.Message{
		ID:          "order-42-paid", // the consumers' dedupe key
		Key:         "order-42",      // this order's events go out in commit order
		Destination: "orders",
		Body:        []byte(`{"order":42,"status":"paid"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}

// The whole chain: a relay publishes the outbox to Redis streams, one per
// destination, and a consumer of the "orders" stream dedupes redeliveries
// by message ID, which is the event's ID.
func ExampleNewRelay() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"localhost:6379"}})
	defer rdb.Close()

	// The relay side.
	orders, err := redisstream.NewPublisher(rdb, redisstream.PublisherOptions{Stream: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	emails, err := redisstream.NewPublisher(rdb, redisstream.PublisherOptions{Stream: "emails"})
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(pool, outbox.Route(map[string]consumer.Publisher{
		"orders": orders,
		"emails": emails,
	}), outbox.Options{Notify: true})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := relay.Run(ctx); err != nil {
			log.Fatal(err)
		}
	}()

	// The consuming side: at least once from the relay and the stream,
	// one effect per event with the idempotency middleware.
	src, err := redisstream.New(rdb, redisstream.Options{Stream: "orders", Group: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	dedupe, err := idempotency.Middleware(idempotency.Options{
		Store: idempotency.NewMemoryStore(), // idempotencypg or idempotencyredis in production
		Key:   idempotency.KeyFromID,        // the default; KeyFromHeader(outbox.HeaderID) where the broker replaces IDs
	})
	if err != nil {
		log.Fatal(err)
	}
	c, err := consumer.New(src, dedupe(consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		return nil // bill the order in m.Body
	})), consumer.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
