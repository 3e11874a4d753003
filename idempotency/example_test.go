package idempotency_test

import (
	"context"
	"fmt"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
)

// An at-least-once broker delivers the same message three times. Behind
// the idempotency middleware the handler runs once; the duplicates are
// acked (nil) without running it.
func ExampleMiddleware() {
	ctx := context.Background()
	dedupe, err := idempotency.Middleware(idempotency.Options{
		Store:     idempotency.NewMemoryStore(),
		Namespace: "charge-card",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	charges := 0
	h := dedupe(consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		charges++
		return nil
	}))

	msg := consumer.Message{ID: "payment-42", Body: []byte(`{"amount":1999}`)}
	for attempt := 1; attempt <= 3; attempt++ {
		delivery := msg // each delivery is a fresh copy
		delivery.Attempt = attempt
		fmt.Printf("delivery %d: %v\n", attempt, h.Handle(ctx, &delivery))
	}
	fmt.Println("charges:", charges)

	// Output:
	// delivery 1: <nil>
	// delivery 2: <nil>
	// delivery 3: <nil>
	// charges: 1
}
