package jetstream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/jetstream"
)

func TestConformance(t *testing.T) {
	nc := connect(t)
	consumertest.RunWithOptions(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		stream := uniqueStream(t, nc)
		src, err := jetstream.New(nc, jetstream.Options{Stream: stream, AckWait: lease})
		require.NoError(t, err)
		require.NoError(t, src.Setup(t.Context())) // the stream must exist before the first Publish
		pub, err := jetstream.NewPublisher(nc, jetstream.PublisherOptions{Subject: stream})
		require.NoError(t, err)
		return src, pub
	}, consumertest.Options{})
}
