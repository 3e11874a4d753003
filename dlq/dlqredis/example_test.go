package dlqredis_test

import (
	"context"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqredis"
)

// A dead-letter store on Redis behind the DLQ middleware. It needs a Redis
// server, so it is compiled but not run.
func ExampleNew() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	store, err := dlqredis.New(client, dlqredis.Options{Name: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	park, err := dlq.Middleware(dlq.Options{Sink: store, Source: "orders", MaxAttempts: 5})
	if err != nil {
		log.Fatal(err)
	}
	_ = park // consumer.Chain(park, consumer.Recover, ...)(handler)

	n, err := store.Count(context.Background(), dlq.Filter{Reason: dlq.ReasonUndecodable})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%d undecodable messages parked", n)
}
