package outbox_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/outbox"
)

// BenchmarkRelay enqueues b.N events from 8 writers, in transactions of 10
// events on 1000 keys, while 3 relays with NOTIFY on publish them to a
// consumer.MemQueue. msgs/s is the whole run, from the first enqueue to
// the last publish; p50-ms and p99-ms are the latencies from just before
// an event's Enqueue (its transaction's commit included) to its publish.
// Run it with a fixed count, such as -benchtime 50000x.
func BenchmarkRelay(b *testing.B) {
	benchRelay(b, false)
}

// BenchmarkRelayBacklog is BenchmarkRelay with the relays started only
// once every event is enqueued: relay-msgs/s is how fast they drain a
// backlog. Latencies then measure the backlog's wait, not the relay.
func BenchmarkRelayBacklog(b *testing.B) {
	benchRelay(b, true)
}

func benchRelay(b *testing.B, backlog bool) {
	const (
		writers = 8
		relays  = 3
		perTx   = 10
		nkeys   = 1000
	)
	ctx := b.Context()
	opts := outbox.Options{Notify: true, Logger: quietLogger()}
	base, w := newOutbox(b, opts)
	wpool := sizedPool(b, base, writers)
	rpool := sizedPool(b, base, 2*relays)

	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(b, err)
	var (
		latencies = make([]time.Duration, b.N)
		seen      = make([]atomic.Bool, b.N)
		done      atomic.Int64
		dups      atomic.Int64
		finished  = make(chan struct{})
	)
	// The in-memory publisher, timing each event's first publish.
	pub := outbox.PublisherFunc(func(ctx context.Context, _ string, msgs ...consumer.Message) error {
		now := time.Now()
		for _, m := range msgs {
			i := binary.BigEndian.Uint64(m.Body[:8])
			if seen[i].Swap(true) {
				dups.Add(1)
				continue
			}
			latencies[i] = now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(m.Body[8:16]))))
			if done.Add(1) == int64(b.N) {
				close(finished)
			}
		}
		return q.Publish(ctx, msgs...)
	})

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var rwg sync.WaitGroup
	startRelays := func() {
		for range relays {
			r, err := outbox.NewRelay(rpool, pub, opts)
			require.NoError(b, err)
			rwg.Go(func() { _ = r.Run(runCtx) })
		}
	}
	if !backlog {
		startRelays()
		// Let the relays connect, LISTEN and settle before the clock
		// starts.
		time.Sleep(200 * time.Millisecond)
	}

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wwg sync.WaitGroup
	errs := make(chan error, writers)
	for wr := range writers {
		wwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wr), 7))
			msgs := make([]outbox.Message, 0, perTx)
			for {
				first := next.Add(perTx) - perTx
				if first >= int64(b.N) {
					return
				}
				msgs = msgs[:0]
				stamp := uint64(time.Now().UnixNano())
				for i := first; i < min(first+perTx, int64(b.N)); i++ {
					body := make([]byte, 16, 48)
					binary.BigEndian.PutUint64(body, uint64(i))
					binary.BigEndian.PutUint64(body[8:], stamp)
					body = append(body, `{"order":42,"amount":"19.99"}`...)
					msgs = append(msgs, outbox.Message{
						ID:   fmt.Sprintf("bench-%09d", i),
						Key:  fmt.Sprintf("customer-%04d", rng.IntN(nkeys)),
						Body: body,
					})
				}
				if err := enqueueTx(ctx, wpool, w, msgs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wwg.Wait()
	enqueued := time.Now()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	if backlog {
		startRelays()
	}
	select {
	case <-finished:
	case <-time.After(time.Minute):
		b.Fatalf("after a minute, %d of %d events published", done.Load(), b.N)
	}
	end := time.Now()
	b.StopTimer()
	stop()
	rwg.Wait()

	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(0, "ns/op") // meaningless here
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/enqueued.Sub(start).Seconds(), "enqueue-msgs/s")
	if backlog {
		b.ReportMetric(float64(b.N)/end.Sub(enqueued).Seconds(), "relay-msgs/s")
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(dups.Load()), "dups")
}

// enqueueTx enqueues msgs in a transaction of their own.
func enqueueTx(ctx context.Context, pool *pgxpool.Pool, w *outbox.Writer, msgs []outbox.Message) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := w.Enqueue(ctx, tx, msgs...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
