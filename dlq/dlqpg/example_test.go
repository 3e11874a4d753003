package dlqpg_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

// A capped dead-letter table behind the dlq middleware: when it holds
// 100000 entries, new failures stay on their queue instead of evicting
// older ones.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	opts := dlqpg.Options{MaxEntries: 100_000}
	if err := dlqpg.Migrate(ctx, pool, opts); err != nil {
		log.Fatal(err)
	}
	store, err := dlqpg.New(pool, opts)
	if err != nil {
		log.Fatal(err)
	}

	mw, err := dlq.Middleware(dlq.Options{Sink: store, Source: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	_ = mw // consumer.Chain(..., mw, ...)(handler)
}
