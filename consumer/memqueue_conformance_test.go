package consumer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
)

func TestMemQueueConformance(t *testing.T) {
	consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: lease})
		require.NoError(t, err)
		return q, q
	})
}
