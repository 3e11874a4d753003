package idempotency_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemq/idemq/idempotency"
)

// benchStore measures claim+complete of distinct keys at parallelism 32,
// the work the middleware does for each new message.
func benchStore(b *testing.B, store idempotency.Store) {
	ctx := context.Background()
	var seq atomic.Int64
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	b.SetParallelism(32 / max(1, testingProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := prefix + strconv.FormatInt(seq.Add(1), 10)
			c, err := store.Claim(ctx, key, "fp", time.Minute)
			if err != nil {
				b.Error(err)
				return
			}
			if c.Status != idempotency.Claimed {
				b.Errorf("claim %s: %v", key, c.Status)
				return
			}
			if err := store.Complete(ctx, key, c.Token, nil, time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkStore(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchStore(b, idempotency.NewMemoryStore()) })
}

// testingProcs is GOMAXPROCS, by which RunParallel multiplies SetParallelism.
func testingProcs() int { return runtime.GOMAXPROCS(0) }
