package consumertest

import (
	"context"

	"github.com/idemq/idemq/consumer"
)

// ackCounter is a Source whose deliveries call onAck after each successful
// Ack: the end-to-end checks count what the runtime acknowledged, not only
// what the handler returned.
type ackCounter struct {
	consumer.Source
	onAck func(*consumer.Message)
}

func (s ackCounter) Fetch(ctx context.Context, limit int) ([]consumer.Delivery, error) {
	ds, err := s.Source.Fetch(ctx, limit)
	for i, d := range ds {
		ds[i] = countedDelivery{d, s.onAck}
	}
	return ds, err
}

type countedDelivery struct {
	consumer.Delivery
	onAck func(*consumer.Message)
}

func (d countedDelivery) Ack(ctx context.Context) error {
	err := d.Delivery.Ack(ctx)
	if err == nil {
		d.onAck(d.Message())
	}
	return err
}
