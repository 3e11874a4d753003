package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramEmpty(t *testing.T) {
	t.Parallel()
	var h histogram
	require.Equal(t, summary{}, h.summary())
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	// Every value lands in a bucket whose bounds hold it, and buckets are
	// contiguous and increasing.
	for _, us := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 123456, 1 << 40, 1<<63 + 12345} {
		i := bucketOf(us)
		require.Less(t, i, buckets)
		require.LessOrEqual(t, us, bucketHigh(i), "value %d", us)
		if i > 0 {
			require.Greater(t, us, bucketHigh(i-1), "value %d", us)
		}
	}
	require.Equal(t, buckets-1, bucketOf(^uint64(0)))
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	var h histogram
	samples := make([]time.Duration, 10_000)
	for i := range samples {
		samples[i] = time.Duration(rand.Int64N(int64(2 * time.Second)))
		h.add(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := h.quantile(q)
		// Rounded up to a bucket's upper bound: never below, and at most
		// 1/16 above.
		require.GreaterOrEqual(t, got, exact, "q %g", q)
		require.LessOrEqual(t, float64(got), float64(exact)*(1+1.0/subCount)+float64(time.Microsecond), "q %g", q)
	}
	s := h.summary()
	require.Equal(t, uint64(len(samples)), s.N)
	require.Equal(t, samples[len(samples)-1], s.Max)
	require.LessOrEqual(t, s.P50, s.P95)
	require.LessOrEqual(t, s.P95, s.P99)
	require.LessOrEqual(t, s.P99, s.Max)
	require.Equal(t, s.Max, h.quantile(1))
}

func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	var a, b, all histogram
	for i := range 1000 {
		d := time.Duration(i) * time.Millisecond
		all.add(d)
		if i%3 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	var m histogram
	m.merge(&a)
	m.merge(&b)
	m.merge(&histogram{})
	require.Equal(t, all, m)
}
