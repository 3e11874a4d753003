package redisstream_test

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/redisstream"
)

// A service that publishes orders to a stream and consumes them. Redis
// must be running, so the example has no checked output.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	defer client.Close()

	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "orders"})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Key: "customer-7", Body: []byte(`{"total":42}`)})
	if err != nil {
		fmt.Println(err)
		return
	}

	src, err := redisstream.New(client, redisstream.Options{
		Stream:            "orders",
		Group:             "billing",
		VisibilityTimeout: time.Minute, // longer than the slowest handler
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := src.Setup(ctx); err != nil { // optional: the first Fetch does it too
		fmt.Println(err)
		return
	}
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		fmt.Printf("%s (attempt %d): %s\n", msg.ID, msg.Attempt, msg.Body)
		return nil // acknowledge
	})
	c, err := consumer.New(src, h, consumer.Config{MaxInFlight: 128})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil { // until SIGINT or SIGTERM
		fmt.Println(err)
	}
}
