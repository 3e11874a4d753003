package amqp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/consumer/consumertest"
)

// TestConformance runs the whole suite, its lease checks included, with
// the Source's own lease (Options.Lease) set to the suite's.
func TestConformance(t *testing.T) {
	url := amqp.BrokerURL(t)
	consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		q := amqp.TempQueue(t, url)
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Lease: lease})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, src.Close()) })
		// One declaration at a time: RabbitMQ 3.10 may refuse publishes
		// to a quorum queue that two clients declared at the same moment.
		require.NoError(t, src.Setup(t.Context()))
		pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, pub.Close()) })
		return src, pub
	})
}
