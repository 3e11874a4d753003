package main

import (
	"fmt"
	"io"
	"time"
)

// Green-zone thresholds.
const (
	lagGrowth  = 1.5                   // lag in the last window may exceed the middle's by this factor
	lagSlack   = 50 * time.Millisecond // plus this
	p95Growth  = 2.0                   // p95 in the last window may exceed the baseline's by this factor
	p95Slack   = 20 * time.Millisecond // plus this, for timer noise on a busy machine
	maxDLQRate = 0.001                 // dead-lettered / published
)

// The verdict's windows, as phase ranges [from, to).
const (
	baselineTo = phases * 4 / 20 // 0-20%: before the ramp
	middleFrom = phases * 8 / 20 // 40-60%
	middleTo   = phases * 12 / 20
	lastFrom   = phases * 16 / 20 // 80-100%
)

// report is the outcome of a run.
type report struct {
	Header []string // what ran

	Load    time.Duration // how long messages were published
	Elapsed time.Duration // load and drain

	Published  int64 // copies, duplicates included
	Duplicates int64 // duplicate copies published
	Processed  int64 // acked: handled, skipped as duplicates or parked
	Unfinished int64 // published but not acked when the run stopped
	Throughput float64

	Accepted summary // accepted work: delivery visible -> handler done
	Wait     summary // its part spent waiting to start
	EndToEnd summary // first enqueue -> acked, per copy

	LagMax   time.Duration // largest queue lag at a handler start
	LagFinal time.Duration // largest in the last phase, or the oldest waiting message's age if older

	Nacks              int64 // retries_total: deliveries nacked for redelivery
	Failed             int64 // accepted deliveries that ended in an error
	InProcessRetries   int64 // extra handler calls by consumer.Retry
	DeferredAdmission  int64
	DeferredBreaker    int64
	DeferredInProgress int64
	AdmissionRejects   int64
	BreakerRejects     int64
	BreakerOpened      int64
	DeadLettered       int64
	DLQRate            float64
	DuplicatesSkipped  int64

	Checks []check
	Green  bool
}

// check is one green-zone criterion.
type check struct {
	OK   bool
	Text string
}

// judge applies the green-zone criteria: lag not growing at the end, p95
// stable, DLQ rate near zero.
func judge(base, mid, last stats, oldestAtEnd time.Duration, published, dead int64) []check {
	var cs []check

	// The median over handler starts is the typical lag; unlike a high
	// percentile it is not swamped by a few old messages that are deferred
	// again and again, each time counted anew. The oldest unfinished
	// message when the load stopped catches a tail left behind.
	lagMid := mid.lag.quantile(0.50)
	lagLast := max(last.lag.quantile(0.50), oldestAtEnd)
	lagLimit := time.Duration(lagGrowth*float64(lagMid)) + lagSlack
	ok := lagLast <= lagLimit
	what := "lag not growing"
	if !ok {
		what = "lag growing"
	}
	cs = append(cs, check{ok, fmt.Sprintf("%s: median %s in the last 20%%, oldest unfinished at the end %s, vs median %s in the middle; limit %s",
		what, round(last.lag.quantile(0.50)), round(oldestAtEnd), round(lagMid), round(lagLimit))})

	p95Base := base.accepted.quantile(0.95)
	p95Last := last.accepted.quantile(0.95)
	p95Limit := time.Duration(p95Growth*float64(p95Base)) + p95Slack
	switch {
	case base.accepted.n == 0:
		cs = append(cs, check{false, "p95 unknown: no accepted work in the baseline window"})
	case last.accepted.n == 0:
		cs = append(cs, check{false, "p95 unknown: no accepted work in the last 20%"})
	default:
		stable := p95Last <= p95Limit
		what := "p95 stable"
		if !stable {
			what = "p95 unstable"
		}
		cs = append(cs, check{stable, fmt.Sprintf("%s: %s in the last 20%% vs %s at baseline; limit %s",
			what, round(p95Last), round(p95Base), round(p95Limit))})
	}

	if published == 0 {
		cs = append(cs, check{false, "DLQ rate unknown: nothing published"})
	} else {
		rate := float64(dead) / float64(published)
		cs = append(cs, check{rate < maxDLQRate, fmt.Sprintf("DLQ rate %.3f%% (%d of %d); limit %.1f%%",
			100*rate, dead, published, 100*maxDLQRate)})
	}
	return cs
}

func (r *report) print(w io.Writer) {
	fmt.Fprintln(w, "report")
	for _, h := range r.Header {
		fmt.Fprintf(w, "  %s\n", h)
	}
	fmt.Fprintf(w, "  published           %d copies in %s (%d of them duplicates)\n", r.Published, round(r.Load), r.Duplicates)
	fmt.Fprintf(w, "  processed (acked)   %d; unfinished at exit %d\n", r.Processed, r.Unfinished)
	fmt.Fprintf(w, "  throughput          %.1f msg/s acked over %s (load and drain)\n", r.Throughput, round(r.Elapsed))
	fmt.Fprintf(w, "  accepted latency    %s  (%d deliveries that reached the dependency; visible -> handler done)\n", r.Accepted, r.Accepted.N)
	fmt.Fprintf(w, "    of which waiting  %s  (visible -> handler start)\n", r.Wait)
	fmt.Fprintf(w, "  end-to-end latency  %s  (first enqueue -> acked, deferrals included)\n", r.EndToEnd)
	fmt.Fprintf(w, "  queue lag           max %s, final %s  (now - EnqueuedAt at handler start)\n", round(r.LagMax), round(r.LagFinal))
	fmt.Fprintf(w, "  retries             %d nacks: %d failed, %d deferred by admission, %d by the breaker, %d duplicates in progress; %d in-process retries\n",
		r.Nacks, r.Failed, r.DeferredAdmission, r.DeferredBreaker, r.DeferredInProgress, r.InProcessRetries)
	fmt.Fprintf(w, "  admission rejects   %d\n", r.AdmissionRejects)
	fmt.Fprintf(w, "  breaker             opened %d times, %d rejects\n", r.BreakerOpened, r.BreakerRejects)
	fmt.Fprintf(w, "  dead-lettered       %d (DLQ rate %.3f%%)\n", r.DeadLettered, 100*r.DLQRate)
	fmt.Fprintf(w, "  duplicates skipped  %d\n", r.DuplicatesSkipped)
	verdict := "GREEN"
	if !r.Green {
		verdict = "NOT GREEN"
	}
	fmt.Fprintf(w, "green zone: %s\n", verdict)
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "!!"
		}
		fmt.Fprintf(w, "  [%s] %s\n", mark, c.Text)
	}
}

func (s summary) String() string {
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s", round(s.P50), round(s.P95), round(s.P99), round(s.Max))
}

// round shortens a duration for printing: three significant figures or so.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
