package amqp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/idempotency"
)

// TestBrokerRestart restarts the RabbitMQ application (rabbitmqctl
// stop_app, then start_app) while two Consumers, with the idempotency
// middleware on a shared memory store, consume a queue that is still being
// published to. The Sources and the Publisher reconnect; messages that
// were held when the connections died are delivered again, and those
// whose effect had already happened are skipped as duplicates. Every
// message's effect must happen exactly once.
//
// It does not run in parallel: the other tests of the package wait while
// it stops the broker. It leaves the broker running.
func TestBrokerRestart(t *testing.T) {
	const n = 2000
	url := amqp.BrokerURL(t)
	ctl := rabbitmqctl(t, url)
	q := amqp.TempQueue(t, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	require.NoError(t, pub.Setup(t.Context()))

	var (
		mu      sync.Mutex
		effects = make(map[string]int, n)
		done    = make(chan struct{})
	)
	var obs countingObserver
	mw, err := idempotency.Middleware(idempotency.Options{
		Store: idempotency.NewMemoryStore(), Observer: &obs, InProgressDelay: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	h := mw(consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		time.Sleep(10 * time.Millisecond) // keep messages in flight across the restart
		mu.Lock()
		defer mu.Unlock()
		effects[m.ID]++
		if len(effects) == n && effects[m.ID] == 1 {
			close(done)
		}
		return nil
	}))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	runErrs := make([]error, 2)
	for i := range runErrs {
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: 32})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, src.Close()) })
		c, err := consumer.New(src, h, consumer.Config{
			MaxInFlight: 32, Concurrency: 8, Observer: &obs,
			Backoff: consumer.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
			Logger:  slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		wg.Go(func() { runErrs[i] = c.Run(ctx) })
	}

	// Publish in small batches, and publish a batch again until the broker
	// confirms it: a batch refused during the restart may have been
	// published in part, which makes duplicates for the middleware.
	var republished atomic.Int64
	wg.Go(func() {
		for start := 0; start < n && ctx.Err() == nil; start += 50 {
			batch := make([]consumer.Message, 0, 50)
			for i := start; i < min(start+50, n); i++ {
				batch = append(batch, consumer.Message{ID: fmt.Sprintf("restart-%05d", i), Body: []byte(strconv.Itoa(i))})
			}
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err := pub.Publish(pctx, batch...)
				pcancel()
				if err == nil {
					break
				}
				republished.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// Restart once a fifth of the messages have had their effect.
	waitFor(t, time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(effects) >= n/5
	})
	stopped := time.Now()
	ctl("stop_app")
	t.Cleanup(func() { ctl("start_app"); ctl("await_startup") }) // in case the test stops before it restarts
	time.Sleep(time.Second)
	ctl("start_app")
	ctl("await_startup")
	t.Logf("broker down for %s", time.Since(stopped).Round(time.Millisecond))

	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		mu.Lock()
		got := len(effects)
		mu.Unlock()
		require.FailNow(t, "not every message was processed", "%d of %d after 3 minutes", got, n)
	}
	// Redeliveries of messages whose effect happened come in a little
	// later; give them time to show up as duplicates rather than effects.
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	for i, err := range runErrs {
		require.NoError(t, err, "Run of consumer %d", i)
	}

	mu.Lock()
	defer mu.Unlock()
	var twice []string
	for id, k := range effects {
		if k != 1 {
			twice = append(twice, fmt.Sprintf("%s (%d times)", id, k))
		}
	}
	slices.Sort(twice)
	require.Len(t, effects, n)
	require.Empty(t, twice, "effects that happened more than once")
	require.Positive(t, obs.get(consumer.MetricFetchErrors), "the consumers never saw the connection go")
	t.Logf("%d messages; %d duplicates skipped; %d fetch errors; %d publish retries",
		n, obs.get(idempotency.MetricDuplicatesSkipped), obs.get(consumer.MetricFetchErrors), republished.Load())
}

// rabbitmqctl returns a function that runs rabbitmqctl, against the local
// node, with args and fails t if it fails. It skips t when the broker at
// brokerURL is not local, and when rabbitmqctl is not installed (or fails
// it then when IDEMQ_REQUIRE_SERVICES=1).
func rabbitmqctl(t *testing.T, brokerURL string) func(args ...string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	require.NoError(t, err)
	if !slices.Contains([]string{"127.0.0.1", "localhost", "::1"}, u.Hostname()) {
		if v, _ := strconv.ParseBool(os.Getenv(amqp.EnvRequireServices)); v {
			t.Fatalf("the broker at %s is not this host's, which rabbitmqctl restarts", u.Host)
		}
		t.Skipf("the broker at %s is not this host's, which rabbitmqctl restarts", u.Host)
	}
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		if v, _ := strconv.ParseBool(os.Getenv(amqp.EnvRequireServices)); v {
			t.Fatalf("rabbitmqctl not found (%v); it restarts the broker in this test", err)
		}
		t.Skipf("rabbitmqctl not found (%v); it restarts the broker in this test", err)
	}
	return func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
		require.NoError(t, err, "rabbitmqctl %v: %s", args, out)
	}
}

// waitFor polls cond until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "condition not met", "waited %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingObserver counts what the runtime and middleware report.
type countingObserver struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (o *countingObserver) Count(name string, delta int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = make(map[string]int64)
	}
	o.counts[name] += delta
}

func (o *countingObserver) Observe(string, time.Duration) {}

func (o *countingObserver) get(name string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[name]
}
