package pgqueue_test

import (
	"testing"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/pgqueue"
)

func TestConformance(t *testing.T) {
	// Polling only, with the default poll interval: Fetch wakes for lease
	// ends and Nack delays by itself, and sees publishes at its next poll.
	t.Run("Poll", func(t *testing.T) {
		consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
			src, pub, _ := newQueue(t, pgqueue.Options{VisibilityTimeout: lease})
			return src, pub
		})
	})
	// NOTIFY with a poll interval longer than any check: every publish
	// must come through LISTEN, and every lease end and delay through the
	// Source's own timing.
	t.Run("Notify", func(t *testing.T) {
		consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
			src, pub, _ := newQueue(t, pgqueue.Options{VisibilityTimeout: lease, Notify: true, PollInterval: time.Hour})
			return src, pub
		})
	})
}
