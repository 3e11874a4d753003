package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
)

// The server the tests use, found as the root module's internal/testenv
// finds PostgreSQL and Redis (which a nested module cannot import).
const (
	envNATSURL         = "IDEMQ_NATS_URL"
	envRequireServices = "IDEMQ_REQUIRE_SERVICES"
	defaultNATSURL     = "nats://127.0.0.1:4222"
)

func natsURL() string {
	if v := os.Getenv(envNATSURL); v != "" {
		return v
	}
	return defaultNATSURL
}

// unavailable skips t, or fails it when IDEMQ_REQUIRE_SERVICES=1, because
// what it needs is missing.
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if v, perr := strconv.ParseBool(os.Getenv(envRequireServices)); perr == nil && v {
		t.Fatalf("%s: %v (failing instead of skipping because %s=1)", what, err, envRequireServices)
	}
	t.Skipf("%s: %v (%s=1 turns this skip into a failure)", what, err, envRequireServices)
}

// connect returns a connection to the test server with JetStream enabled,
// closed when t ends, or skips t when there is none.
func connect(t testing.TB) *nats.Conn {
	t.Helper()
	return connectTo(t, natsURL())
}

func connectTo(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.Timeout(3 * time.Second), nats.Name(t.Name())}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		unavailable(t, "NATS unreachable at "+url+" (set "+envNATSURL+", or start nats-server -js)", err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	if _, err := js.AccountInfo(ctx); err != nil {
		unavailable(t, "NATS at "+url+" has no JetStream (start nats-server with -js)", err)
	}
	return nc
}

// uniqueStream returns a stream name no other test uses, and deletes the
// stream, if anything created it, when t ends.
func uniqueStream(t testing.TB, nc *nats.Conn) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "IDEMQ_TEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		js, err := natsjs.New(nc)
		if err != nil {
			return
		}
		if err := js.DeleteStream(ctx, name); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("delete stream %s: %v", name, err)
		}
	})
	return name
}

// newQueue returns a Source (set up) and a Publisher on a fresh stream.
func newQueue(t testing.TB, nc *nats.Conn, opts jetstream.Options) (*jetstream.Source, *jetstream.Publisher) {
	t.Helper()
	if opts.Stream == "" {
		opts.Stream = uniqueStream(t, nc)
	}
	src, err := jetstream.New(nc, opts)
	require.NoError(t, err)
	require.NoError(t, src.Setup(context.Background()))
	pub, err := jetstream.NewPublisher(nc, jetstream.PublisherOptions{Subject: opts.Stream, Stream: opts.Stream})
	require.NoError(t, err)
	return src, pub
}

// consumerInfo returns the state of src's durable consumer.
func consumerInfo(t testing.TB, nc *nats.Conn, src *jetstream.Source) *natsjs.ConsumerInfo {
	t.Helper()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, src.Stream(), src.Durable())
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	return info
}

// streamMsgs returns how many messages stream holds.
func streamMsgs(t testing.TB, nc *nats.Conn, stream string) uint64 {
	t.Helper()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// requireDrained checks that src's stream holds no message and its durable
// nothing pending or unacknowledged.
func requireDrained(t testing.TB, nc *nats.Conn, src *jetstream.Source) {
	t.Helper()
	require.Zero(t, streamMsgs(t, nc, src.Stream()), "messages left in the stream (a work queue: acknowledged ones are removed)")
	ci := consumerInfo(t, nc, src)
	require.Zero(t, ci.NumAckPending, "messages delivered and not acknowledged")
	require.Zero(t, ci.NumPending, "messages not delivered")
}

// fetchOne waits up to wait for one delivery.
func fetchOne(t testing.TB, src consumer.Source, wait time.Duration) consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}
