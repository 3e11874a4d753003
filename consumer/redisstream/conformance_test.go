package redisstream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/internal/testenv"
)

func TestConformance(t *testing.T) {
	consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		client, prefix := testenv.Redis(t)
		src, err := redisstream.New(client, redisstream.Options{
			Stream: "conformance", Prefix: prefix, VisibilityTimeout: lease,
		})
		require.NoError(t, err)
		pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "conformance", Prefix: prefix})
		require.NoError(t, err)
		return src, pub
	})
}
