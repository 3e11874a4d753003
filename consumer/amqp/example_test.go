package amqp_test

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/idempotency"
)

// A service that publishes orders to a quorum queue and consumes them,
// with the idempotency middleware so that a redelivery (after a crash, a
// restart of the broker or a lost connection) has no second effect.
// RabbitMQ must be running, so the example has no checked output.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: "amqp://guest:guest@127.0.0.1:5672/", Queue: "orders"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	// Returns once the broker has confirmed the message.
	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Key: "customer-7", Body: []byte(`{"total":42}`)})
	if err != nil {
		fmt.Println(err)
		return
	}

	const maxInFlight = 128
	src, err := amqp.New(amqp.Options{
		URL:      "amqp://guest:guest@127.0.0.1:5672/",
		Queue:    "orders",
		Prefetch: maxInFlight, // the Consumer's MaxInFlight
		Lease:    time.Minute, // optional: requeue what a stuck caller holds longer without Extend
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()

	dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore()})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := consumer.Chain(dedupe)(consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		fmt.Printf("%s (attempt %d): %s\n", msg.ID, msg.Attempt, msg.Body)
		return nil // acknowledge; an error nacks it for a delayed redelivery
	}))
	c, err := consumer.New(src, h, consumer.Config{MaxInFlight: maxInFlight})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil { // until SIGINT or SIGTERM
		fmt.Println(err)
	}
}
