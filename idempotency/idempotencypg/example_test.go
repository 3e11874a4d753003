package idempotencypg_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
)

// The store behind the idempotency middleware, with a reaper for keys
// whose retention has run out.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	if err := idempotencypg.Migrate(ctx, pool, idempotencypg.Options{}); err != nil {
		log.Fatal(err)
	}
	store, err := idempotencypg.New(pool, idempotencypg.Options{})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = store.RunReaper(ctx, 0, 0) }()

	mw, err := idempotency.Middleware(idempotency.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	_ = mw // consumer.Chain(..., mw, ...)(handler)
}

// The inbox: the handler's writes and the message's key commit together.
func ExampleInbox() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	if err := idempotencypg.MigrateInbox(ctx, pool, idempotencypg.InboxOptions{}); err != nil {
		log.Fatal(err)
	}
	inbox, err := idempotencypg.Inbox(pool, idempotencypg.InboxOptions{})
	if err != nil {
		log.Fatal(err)
	}
	handler := inbox(consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		tx, _ := idempotencypg.TxFromContext(ctx)
		_, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance + 10 WHERE id = $1", msg.Key)
		return err // nil commits the update and the key; an error rolls both back
	}))
	_ = handler
}
