package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
)

// A consumer of an in-memory queue whose handler runs behind Recover and
// Retry. MaxInFlight 1 makes it handle one message at a time, in order.
func ExampleConsumer() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = q.Publish(ctx,
		consumer.Message{ID: "order-1", Body: []byte("order 1 placed")},
		consumer.Message{ID: "order-2", Body: []byte("order 2 placed")},
		consumer.Message{ID: "order-3", Body: []byte("order 3 placed")},
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	retry, err := consumer.Retry(consumer.RetryOptions{MaxAttempts: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	handled := 0
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		fmt.Printf("%s: %s (attempt %d)\n", msg.ID, msg.Body, msg.Attempt)
		handled++
		if handled == 3 {
			cancel() // stop consuming: Run drains and returns
		}
		return nil // acknowledge
	})

	c, err := consumer.New(q, consumer.Chain(consumer.Recover, retry)(h), consumer.Config{MaxInFlight: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run:", c.Run(ctx))
	fmt.Printf("left in queue: %+v\n", q.Stats())

	// Output:
	// order-1: order 1 placed (attempt 1)
	// order-2: order 2 placed (attempt 1)
	// order-3: order 3 placed (attempt 1)
	// run: <nil>
	// left in queue: {Ready:0 Delayed:0 Leased:0}
}

// The first middleware listed is the outermost: it sees the message first
// and the result last.
func ExampleChain() {
	logged := func(name string) consumer.Middleware {
		return func(next consumer.Handler) consumer.Handler {
			return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
				fmt.Println("enter", name)
				defer fmt.Println("leave", name)
				return next.Handle(ctx, msg)
			})
		}
	}
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		fmt.Println("handle", msg.ID)
		return nil
	})

	chained := consumer.Chain(logged("outer"), logged("inner"))(h)
	err := chained.Handle(context.Background(), &consumer.Message{ID: "m1"})
	fmt.Println("err:", err)

	// Output:
	// enter outer
	// enter inner
	// handle m1
	// leave inner
	// leave outer
	// err: <nil>
}

// A message that cannot be decoded will not decode on a retry either: mark
// the failure permanent so that Retry stops at once and a dead-letter
// middleware parks the message. The mark survives wrapping, and the cause
// stays visible to errors.Is.
func ExamplePermanent() {
	errBadJSON := errors.New("invalid JSON")
	decode := func(body []byte) error {
		return consumer.Permanent(fmt.Errorf("decoding order: %w", errBadJSON))
	}

	err := fmt.Errorf("message 42: %w", decode([]byte("{")))

	fmt.Println(err)
	fmt.Println("permanent:", consumer.IsPermanent(err))
	fmt.Println("bad JSON:", errors.Is(err, errBadJSON))
	fmt.Println("permanent(nil) is nil:", consumer.Permanent(nil) == nil)

	// Output:
	// message 42: permanent: decoding order: invalid JSON
	// permanent: true
	// bad JSON: true
	// permanent(nil) is nil: true
}

// Delays double from Initial up to Max. NoJitter shows the schedule itself;
// real consumers keep the default FullJitter, which draws each delay from
// [0, the value shown] so that failures that happened together are not
// retried together.
func ExampleBackoff() {
	b := consumer.Backoff{
		Initial:    100 * time.Millisecond,
		Multiplier: 2,
		Max:        time.Second,
		Jitter:     consumer.NoJitter,
	}
	for attempt := 1; attempt <= 6; attempt++ {
		fmt.Printf("attempt %d: %s\n", attempt, b.Delay(attempt))
	}

	// Output:
	// attempt 1: 100ms
	// attempt 2: 200ms
	// attempt 3: 400ms
	// attempt 4: 800ms
	// attempt 5: 1s
	// attempt 6: 1s
}
