package stockpg_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

// A hot item in a sharded store, one voucher per customer, and a sweeper
// that keeps Level accurate between reservations.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	opts := stockpg.Options{Shards: 8}
	if err := stockpg.Migrate(ctx, pool, opts); err != nil {
		log.Fatal(err)
	}
	store, err := stockpg.New(pool, opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Define(ctx, "spring-drop", stock.ItemConfig{HolderLimit: 1}); err != nil {
		log.Fatal(err)
	}
	if err := store.Restock(ctx, "spring-drop", 1000); err != nil {
		log.Fatal(err)
	}
	go func() {
		for range time.Tick(time.Second) {
			_, _ = store.Sweep(ctx, 1000)
		}
	}()

	r, err := store.Reserve(ctx, stock.ReserveRequest{
		Item: "spring-drop", Holder: "customer-42", ID: "order-9001", Hold: 10 * time.Minute,
	})
	switch {
	case errors.Is(err, stock.ErrSoldOut), errors.Is(err, stock.ErrHolderLimit):
		return // tell the customer
	case err != nil:
		log.Fatal(err) // retry with the same ID: it never takes a unit twice
	}
	// ... take the payment, then:
	if _, err := store.Confirm(ctx, r.ID); err != nil {
		log.Fatal(err)
	}
}
