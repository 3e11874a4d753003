package idempotencyredis_test

import (
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencyredis"
)

// A Redis idempotency store behind the consumer middleware. It needs a
// Redis server, so it is compiled but not run.
func ExampleNew() {
	// Size the pool to at least the handlers that run at once.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", PoolSize: 64})
	defer client.Close()
	store, err := idempotencyredis.New(client, idempotencyredis.Options{})
	if err != nil {
		log.Fatal(err)
	}
	dedupe, err := idempotency.Middleware(idempotency.Options{Store: store, Namespace: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	_ = dedupe // consumer.Chain(park, consumer.Recover, dedupe, retry)(handler)
}
