package amqp

// The test environment: a copy, for RabbitMQ, of the skip-or-fail rule of
// the root module's internal/testenv, which a nested module cannot import.

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Environment variables the tests read.
const (
	EnvURL             = "IDEMQ_AMQP_URL"         // default DefaultURL
	EnvRequireServices = "IDEMQ_REQUIRE_SERVICES" // 1: fail, not skip, when the broker is unreachable
)

// pingTimeout bounds the reachability check.
const pingTimeout = 3 * time.Second

// BrokerURL returns the URL of the RabbitMQ the tests use, the value of
// IDEMQ_AMQP_URL or DefaultURL, once it has checked that the broker
// answers. When it does not, it skips t, or fails it when
// IDEMQ_REQUIRE_SERVICES=1.
func BrokerURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		url = DefaultURL
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(pingTimeout)})
	if err != nil {
		unavailable(t, url, err)
	}
	_ = conn.Close()
	return url
}

func unavailable(t testing.TB, url string, err error) {
	t.Helper()
	where := redactURL(url)
	if v, perr := strconv.ParseBool(os.Getenv(EnvRequireServices)); perr == nil && v {
		t.Fatalf("amqp tests: RabbitMQ unreachable at %s: %v (set %s, or start it; failing instead of skipping because %s=1)",
			where, err, EnvURL, EnvRequireServices)
		return
	}
	t.Skipf("amqp tests: RabbitMQ unreachable at %s: %v (set %s, or start it; %s=1 turns this skip into a failure)",
		where, err, EnvURL, EnvRequireServices)
}

// TempQueue returns a fresh queue name (idemq-test-<hex>) that belongs to t:
// when t ends, the queue and its delay queues (for DefaultDelayBuckets and
// the given buckets) are deleted, whether or not they were declared.
func TempQueue(t testing.TB, url string, buckets ...time.Duration) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	q := "idemq-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		names := []string{q}
		for _, bs := range [][]time.Duration{DefaultDelayBuckets, buckets} {
			for _, b := range bs {
				names = append(names, delayQueueName(q, b))
			}
		}
		if err := DeleteQueues(url, names...); err != nil {
			t.Errorf("delete test queues: %v", err)
		}
	})
	return q
}

// DeleteQueues deletes the named queues, those that exist.
func DeleteQueues(url string, names ...string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, n := range names {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if _, err := ch.QueueDelete(n, false, false, false); err != nil {
			return err
		}
		_ = ch.Close()
	}
	return nil
}

// QueueDepth returns how many messages wait in queue, not counting those
// delivered and not yet acknowledged.
func QueueDepth(t testing.TB, url, queue string) int {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}
