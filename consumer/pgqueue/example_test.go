package pgqueue_test

import (
	"context"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// A consumer of the "emails" queue, woken by LISTEN/NOTIFY.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	opts := pgqueue.Options{Queue: "emails", VisibilityTimeout: time.Minute, Notify: true}
	if err := pgqueue.Migrate(ctx, pool, opts); err != nil {
		log.Fatal(err)
	}
	src, err := pgqueue.New(pool, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close() // before pool.Close

	c, err := consumer.New(src, consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		return nil // send the email m.Body describes
	}), consumer.Config{MaxInFlight: 64})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Publishing in the transaction that makes the change the message
// announces: both commit, or neither does.
func ExampleNewPublisher() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE users SET email = $1 WHERE id = $2`, "ada@example.com", 42); err != nil {
		log.Fatal(err)
	}
	pub, err := pgqueue.NewPublisher(tx, pgqueue.Options{Queue: "emails", Notify: true})
	if err != nil {
		log.Fatal(err)
	}
	err = pub.Publish(ctx, consumer.Message{
		ID:   "user-42-email-changed-1", // the event's own ID: the consumer's dedupe key
		Key:  "user-42",
		Body: []byte(`{"user":42,"template":"email-changed"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}
