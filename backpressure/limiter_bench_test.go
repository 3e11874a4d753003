package backpressure_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/idemq/idemq/backpressure"
)

// benchLimiter measures acquire+release, alone and at parallelism 32
// (RunParallel with 16 goroutines per GOMAXPROCS on 2 cores).
func benchLimiter(b *testing.B, acquire func(context.Context) error, release func()) {
	ctx := context.Background()
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	}
	b.Run("uncontended", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			if err := acquire(ctx); err != nil {
				b.Fatal(err)
			}
			release()
		}
		report(b, start)
	})
	b.Run("parallel-32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := acquire(ctx); err != nil {
					b.Error(err)
					return
				}
				release()
			}
		})
		report(b, start)
	})
}

func BenchmarkSemaphore(b *testing.B) {
	s, err := backpressure.NewSemaphore(8)
	if err != nil {
		b.Fatal(err)
	}
	benchLimiter(b, s.Acquire, s.Release)
}

func BenchmarkAdmission(b *testing.B) {
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{Limit: 8, MaxWait: time.Second, MaxQueue: 64})
	if err != nil {
		b.Fatal(err)
	}
	benchLimiter(b, a.Acquire, a.Release)
}

func BenchmarkAIMD(b *testing.B) {
	l, err := backpressure.NewAIMD(backpressure.AIMDOptions{Initial: 8, Max: 8, MaxWait: time.Second, MaxQueue: 64})
	if err != nil {
		b.Fatal(err)
	}
	var p backpressure.Permit
	b.Run("uncontended", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			var err error
			if p, err = l.Acquire(context.Background()); err != nil {
				b.Fatal(err)
			}
			l.Release(p, nil)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	})
	// With a Timeout, each call also reads the clock twice.
	lt, err := backpressure.NewAIMD(backpressure.AIMDOptions{Initial: 8, Max: 8, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("uncontended-timeout", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			p, err := lt.Acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			lt.Release(p, nil)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	})
	b.Run("parallel-32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p, err := l.Acquire(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				l.Release(p, nil)
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	})
}

// BenchmarkXSyncSemaphore is the reference point: golang.org/x/sync's
// weighted semaphore, which cannot be resized.
func BenchmarkXSyncSemaphore(b *testing.B) {
	s := semaphore.NewWeighted(8)
	benchLimiter(b, func(ctx context.Context) error { return s.Acquire(ctx, 1) }, func() { s.Release(1) })
}
