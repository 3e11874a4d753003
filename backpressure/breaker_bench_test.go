package backpressure

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkBreaker measures Allow+Record in the closed state: the cost a
// healthy dependency pays for being protected.
func BenchmarkBreaker(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		br := brkBenchBreaker(b, BreakerOptions{})
		b.ReportAllocs()
		for b.Loop() {
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			br.Record(tk, nil)
		}
		brkReportOps(b)
	})
	b.Run("uncontended-ratio", func(b *testing.B) {
		// The failure ratio reads the clock on every Record.
		br := brkBenchBreaker(b, BreakerOptions{FailureRatio: 0.5})
		b.ReportAllocs()
		for b.Loop() {
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			br.Record(tk, nil)
		}
		brkReportOps(b)
	})
	b.Run("parallel-32", func(b *testing.B) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
		br := brkBenchBreaker(b, BreakerOptions{})
		b.ReportAllocs()
		b.SetParallelism(16) // 16 × GOMAXPROCS 2 = 32 goroutines
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tk, err := br.Allow()
				if err != nil {
					panic(err)
				}
				br.Record(tk, nil)
			}
		})
		brkReportOps(b)
	})
}

// BenchmarkBreakers measures Get on a set of per-key breakers: a known key,
// and a new key that evicts one.
func BenchmarkBreakers(b *testing.B) {
	const maxKeys = 1000
	keys := make([]string, 4*maxKeys)
	for i := range keys {
		keys[i] = "tenant-" + strconv.Itoa(i)
	}
	b.Run("get", func(b *testing.B) {
		g, err := NewBreakers(BreakerOptions{}, maxKeys)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys[:maxKeys] {
			g.Get(k)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Get(keys[i%maxKeys])
			i++
		}
		brkReportOps(b)
	})
	b.Run("get-evict", func(b *testing.B) {
		g, err := NewBreakers(BreakerOptions{}, maxKeys)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Get(keys[i%len(keys)]) // cycles through 4× maxKeys keys: every Get creates one
			i++
		}
		brkReportOps(b)
	})
}

func brkBenchBreaker(b *testing.B, opts BreakerOptions) *Breaker {
	br, err := NewBreaker(opts)
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func brkReportOps(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}
