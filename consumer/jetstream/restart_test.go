package jetstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
	"github.com/idemq/idemq/idempotency"
)

// TestBrokerRestart restarts the server twice, on the same storage
// directory, while four Consumers (each on a connection of its own)
// consume a stream that a publisher is still filling. The consumers go
// through the idempotency middleware (one memory store, as if shared by
// the fleet), so that what JetStream delivers again after a restart
// (deliveries whose acknowledgements were lost with the connection, and
// those whose leases lapsed meanwhile) is not handled again. Every
// message must have its effect exactly once, and the durable must end with
// nothing left to deliver and, after a graceful stop, nothing
// unacknowledged.
//
// The server is one of the test's own (see startServer), so that the
// server other tests share is not disturbed. It is stopped gracefully
// (SIGTERM) in one sub-test and killed (SIGKILL) in the other.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	t.Run("Graceful", func(t *testing.T) {
		t.Parallel()
		left, unacked := restartDuringConsume(t, syscall.SIGTERM)
		require.Zero(t, left, "messages left in the stream (a work queue: acknowledged ones are removed)")
		require.Zero(t, unacked, "messages delivered and not acknowledged")
	})
	t.Run("Killed", func(t *testing.T) {
		t.Parallel()
		left, unacked := restartDuringConsume(t, syscall.SIGKILL)
		// nats-server 2.9 can lose either half of an acknowledgement it
		// processed just before it was killed: the removal of the message
		// from the stream, which then keeps it while the durable counts
		// it as acknowledged, or the durable's record of the ack, which
		// then keeps as unacknowledged a message the stream no longer
		// has, and tries every AckWait to deliver it ("deleted message"
		// in the server's log). Every message has had its effect exactly
		// once either way (checked above); storage and a count are lost,
		// not a message. See the package documentation.
		t.Logf("after the kills: %d acknowledged messages left in the stream; %d deleted ones counted as unacknowledged", left, unacked)
	})
}

// restartDuringConsume runs the scenario of TestBrokerRestart, stopping
// the server twice with sig, and returns how many messages are left in
// the stream at the end and how many the durable still counts as
// delivered and not acknowledged.
func restartDuringConsume(t *testing.T, sig syscall.Signal) (left uint64, unacked int) {
	const (
		n     = 3000
		lease = 2 * time.Second
	)
	srv := startServer(t)
	dial := func() *nats.Conn {
		return connectTo(t, srv.URL(),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(50*time.Millisecond),
			// Fail fast while disconnected, rather than buffer and send
			// after reconnecting (see the package documentation).
			nats.ReconnectBufSize(-1),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}), // the restarts' broken pipes
		)
	}
	nc := dial()
	stream := uniqueStream(t, nc)
	src, pub := newQueue(t, nc, jetstream.Options{Stream: stream, AckWait: lease, PullExpiry: time.Second})

	var (
		mu         sync.Mutex
		effects    = make(map[string]int, n) // runs of the business logic
		deliveries = make(map[string]int, n) // what reached the handler chain
		done       = make(chan struct{})
		progress   = make(chan int, 1)
	)
	business := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		effects[m.ID]++
		if effects[m.ID] == 1 {
			select {
			case progress <- len(effects):
			default:
			}
			if len(effects) == n {
				close(done)
			}
		}
		return nil
	})
	count := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
			mu.Lock()
			deliveries[m.ID]++
			mu.Unlock()
			return next.Handle(ctx, m)
		})
	}
	quiet := slog.New(slog.DiscardHandler)
	dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Logger: quiet})
	require.NoError(t, err)
	h := consumer.Chain(count, dedupe)(business)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	runErrs := make([]error, 4)
	for i := range runErrs {
		s, err := jetstream.New(dial(), jetstream.Options{Stream: stream, AckWait: lease, PullExpiry: time.Second})
		require.NoError(t, err)
		c, err := consumer.New(s, h, consumer.Config{
			MaxInFlight: 64,
			Backoff:     consumer.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
			Logger:      quiet,
		})
		require.NoError(t, err)
		wg.Go(func() { runErrs[i] = c.Run(ctx) })
	}

	// The publisher retries a failed batch until it is stored: the stream
	// drops the copies it already has by their Nats-Msg-Id.
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("restart-%05d", i), Key: fmt.Sprint(i % 10), Body: []byte{byte(i)}}
	}
	var pubRetries int
	wg.Go(func() {
		for chunk := range slices.Chunk(msgs, 50) {
			for ctx.Err() == nil {
				if err := pub.Publish(ctx, chunk...); err == nil {
					break
				}
				pubRetries++
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond) // spread publishing over the restarts
		}
	})

	waitFor := func(k int) {
		t.Helper()
		timeout := time.After(2 * time.Minute)
		for {
			select {
			case got := <-progress:
				if got >= k {
					return
				}
			case <-done:
				return
			case <-timeout:
				info := consumerInfo(t, nc, src)
				mu.Lock()
				handled := len(effects)
				mu.Unlock()
				require.FailNow(t, "messages did not get handled",
					"waited 2 minutes for %d of %d: %d handled; the durable has %d to deliver, %d unacknowledged",
					k, n, handled, info.NumPending, info.NumAckPending)
			}
		}
	}
	for i := range 2 {
		waitFor((i + 1) * n / 3)
		srv.stop(sig)
		time.Sleep(500 * time.Millisecond)
		srv.start()
	}
	waitFor(n)

	// Wait for every message to be delivered, then for the last
	// acknowledgements and for any redelivery still to come to be handled
	// (and skipped) too: a delivery not acknowledged comes back within
	// AckWait, so a few of them are enough.
	require.Eventually(t, func() bool {
		return consumerInfo(t, nc, src).NumPending == 0
	}, 2*time.Minute, 50*time.Millisecond, "messages never delivered")
	settle := time.Now().Add(5 * lease)
	for {
		unacked = consumerInfo(t, nc, src).NumAckPending
		if unacked == 0 || time.Now().After(settle) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for i, err := range runErrs {
		require.NoError(t, err, "Run of consumer %d", i)
	}

	mu.Lock()
	defer mu.Unlock()
	var twice, missing []string
	redelivered := 0
	for _, m := range msgs {
		switch effects[m.ID] {
		case 1:
		case 0:
			missing = append(missing, m.ID)
		default:
			twice = append(twice, fmt.Sprintf("%s (%d times)", m.ID, effects[m.ID]))
		}
		redelivered += deliveries[m.ID] - 1
	}
	require.Empty(t, missing, "messages never handled")
	require.Empty(t, twice, "messages whose effect happened more than once")
	require.Len(t, effects, n, "effects of messages that were never published")
	t.Logf("%d messages; %d deliveries after the first were skipped as duplicates; %d publish retries", n, redelivered, pubRetries)
	require.Zero(t, consumerInfo(t, nc, src).NumPending, "messages not delivered")
	return streamMsgs(t, nc, stream), unacked
}
