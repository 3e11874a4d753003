package jetstream_test

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
	"github.com/idemq/idemq/dlq"
)

// A service that publishes orders to a stream and consumes them, parking
// a message that fails five deliveries. NATS must be running, so the
// example has no checked output.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	nc, err := nats.Connect("nats://127.0.0.1:4222",
		nats.MaxReconnects(-1),
		// While disconnected, fail acknowledgements at once rather than
		// send them after reconnecting, maybe past their lease.
		nats.ReconnectBufSize(-1),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	src, err := jetstream.New(nc, jetstream.Options{
		Stream:   "ORDERS",
		Subjects: []string{"orders.>"},
		Durable:  "billing",
		AckWait:  time.Minute,
		// MaxDeliver is left unlimited: the DLQ, not the stream, decides
		// when a message has failed too often.
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := src.Setup(ctx); err != nil { // creates the stream and the durable
		fmt.Println(err)
		return
	}

	pub, err := jetstream.NewPublisher(nc, jetstream.PublisherOptions{Subject: "orders.placed"})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Key: "customer-7", Body: []byte(`{"total":42}`)})
	if err != nil {
		fmt.Println(err)
		return
	}

	parked, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	park, err := dlq.Middleware(dlq.Options{Sink: parked, Source: "ORDERS/billing", MaxAttempts: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		fmt.Printf("%s (attempt %d): %s\n", msg.ID, msg.Attempt, msg.Body)
		return nil // acknowledge
	})
	c, err := consumer.New(src, park(h), consumer.Config{MaxInFlight: 128})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil { // until SIGINT or SIGTERM
		fmt.Println(err)
	}
}
