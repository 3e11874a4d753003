package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values are counted in whole microseconds, exactly below
// 2^subBits and then in 2^subBits buckets per power of two, so a bucket is
// at most 1/16 as wide as its lower bound and a percentile read from it is
// off by less than 6.25%. That is plenty to tell 15ms from 5s, and it keeps
// a histogram a fixed 7.6 KiB however many samples it holds.
const (
	subBits  = 4
	subCount = 1 << subBits
	buckets  = (64 - subBits + 1) * subCount // covers every uint64
)

// histogram counts durations. The zero value is empty and ready to use; it
// is not safe for concurrent use (the recorder holds a lock).
type histogram struct {
	counts [buckets]uint64
	n      uint64
	min    time.Duration
	max    time.Duration
}

func bucketOf(us uint64) int {
	if us < subCount {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us lies in [2^e, 2^(e+1)), e >= subBits
	sub := (us >> (e - subBits)) & (subCount - 1)
	return (e-subBits+1)*subCount + int(sub)
}

// bucketHigh returns the largest value, in microseconds, that falls in
// bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := i/subCount + subBits - 1
	sub := uint64(i % subCount)
	width := uint64(1) << (e - subBits)
	return (subCount+sub)*width + width - 1
}

// add records d; negative durations count as zero.
func (h *histogram) add(d time.Duration) {
	d = max(d, 0)
	us := uint64((d + time.Microsecond - 1) / time.Microsecond) // round up
	h.counts[bucketOf(us)]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// quantile returns the smallest recorded bucket's upper bound below which
// a fraction q of the samples lie, clamped to the exact minimum and
// maximum. It rounds up: a reported p99 is never below the true one by
// more than the rounding to whole microseconds. It is monotonic in q, so
// p50 <= p95 <= p99 <= max always holds. An empty histogram returns 0.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			d := time.Duration(bucketHigh(i)) * time.Microsecond
			return min(max(d, h.min), h.max)
		}
	}
	return h.max
}

// summary is what the report prints of a histogram.
type summary struct {
	N             uint64
	P50, P95, P99 time.Duration
	Max           time.Duration
}

func (h *histogram) summary() summary {
	return summary{N: h.n, P50: h.quantile(0.50), P95: h.quantile(0.95), P99: h.quantile(0.99), Max: h.max}
}
