package stockredis_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockredis"
)

// Reserving a voucher from a Redis stock store. It needs a Redis server,
// so it is compiled but not run.
func ExampleNew() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	store, err := stockredis.New(client, stockredis.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Define(ctx, "welcome-voucher", stock.ItemConfig{HolderLimit: 1}); err != nil {
		log.Fatal(err)
	}
	r, err := store.Reserve(ctx, stock.ReserveRequest{
		Item: "welcome-voucher", Holder: "user-42", ID: "req-7f3a", Hold: 5 * time.Minute,
	})
	switch {
	case errors.Is(err, stock.ErrSoldOut):
		log.Print("sold out")
	case err != nil:
		log.Fatal(err)
	default:
		if _, err := store.Confirm(ctx, r.ID); err != nil {
			log.Fatal(err)
		}
	}
}
