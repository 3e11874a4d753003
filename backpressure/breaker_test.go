package backpressure

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

var (
	errBrkDown     = errors.New("dependency down")
	errBrkNotFound = errors.New("not found")
)

// brkClock is a fake clock for breakers; tests move it by hand.
type brkClock struct {
	mu sync.Mutex
	t  time.Time
}

func newBrkClock() *brkClock {
	return &brkClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *brkClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *brkClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// brkObserver records counts, and the range the breaker-state gauge went
// through.
type brkObserver struct {
	mu                 sync.Mutex
	counts             map[string]int64
	gaugeMin, gaugeMax int64
}

func (o *brkObserver) Count(name string, delta int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int64{}
	}
	o.counts[name] += delta
	if name == MetricBreakerState {
		o.gaugeMin = min(o.gaugeMin, o.counts[name])
		o.gaugeMax = max(o.gaugeMax, o.counts[name])
	}
}

func (o *brkObserver) Observe(string, time.Duration) {}

func (o *brkObserver) get(name string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[name]
}

var _ consumer.Observer = (*brkObserver)(nil)

// brkTransition is one OnStateChange call.
type brkTransition struct {
	name     string
	from, to State
}

// brkTransitions collects OnStateChange calls.
type brkTransitions struct {
	mu  sync.Mutex
	got []brkTransition
}

func (r *brkTransitions) record(name string, from, to State) {
	r.mu.Lock()
	r.got = append(r.got, brkTransition{name, from, to})
	r.mu.Unlock()
}

func (r *brkTransitions) list() []brkTransition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]brkTransition(nil), r.got...)
}

func newTestBreaker(t *testing.T, opts BreakerOptions, clock *brkClock) *Breaker {
	t.Helper()
	opts.now = clock.now
	b, err := NewBreaker(opts)
	require.NoError(t, err)
	return b
}

// A script is a sequence of steps on one breaker; after each, the runner
// checks State and RemainingDelay exactly.
type brkOp int

const (
	brkOpCall    brkOp = iota // Allow must admit; Record err at once
	brkOpTake                 // Allow must admit; keep the ticket as name
	brkOpGive                 // Record err with the ticket kept as name
	brkOpRefuse               // Allow must reject with reason and retry
	brkOpTick                 // move the clock by d
	brkOpOpen                 // Open by hand
	brkOpClose                // Close by hand
	brkOpRecord0              // Record err with the zero Ticket
)

type brkStep struct {
	op        brkOp
	err       error
	name      string
	reason    string
	retry     time.Duration
	d         time.Duration
	want      State
	wantDelay time.Duration
}

func (s brkStep) String() string {
	switch s.op {
	case brkOpCall:
		return fmt.Sprintf("call(%v)", s.err)
	case brkOpTake:
		return fmt.Sprintf("take(%s)", s.name)
	case brkOpGive:
		return fmt.Sprintf("give(%s, %v)", s.name, s.err)
	case brkOpRefuse:
		return fmt.Sprintf("refuse(%q, %s)", s.reason, s.retry)
	case brkOpTick:
		return fmt.Sprintf("tick(%s)", s.d)
	case brkOpOpen:
		return "Open()"
	case brkOpClose:
		return "Close()"
	case brkOpRecord0:
		return fmt.Sprintf("Record(Ticket{}, %v)", s.err)
	}
	return "?"
}

// delay sets the RemainingDelay expected after the step.
func (s brkStep) delay(d time.Duration) brkStep { s.wantDelay = d; return s }

func brkCall(err error, want State) brkStep { return brkStep{op: brkOpCall, err: err, want: want} }
func brkTake(name string, want State) brkStep {
	return brkStep{op: brkOpTake, name: name, want: want}
}
func brkGive(name string, err error, want State) brkStep {
	return brkStep{op: brkOpGive, name: name, err: err, want: want}
}
func brkRefuse(reason string, retry time.Duration, want State) brkStep {
	return brkStep{op: brkOpRefuse, reason: reason, retry: retry, want: want}
}
func brkTick(d time.Duration, want State) brkStep { return brkStep{op: brkOpTick, d: d, want: want} }
func brkOpenStep() brkStep                        { return brkStep{op: brkOpOpen, want: StateOpen} }
func brkCloseStep() brkStep                       { return brkStep{op: brkOpClose, want: StateClosed} }

// brkRepeat is n copies of s.
func brkRepeat(n int, s brkStep) []brkStep {
	out := make([]brkStep, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// brkScript flattens steps and step lists into one script.
func brkScript(parts ...any) []brkStep {
	var out []brkStep
	for _, p := range parts {
		switch p := p.(type) {
		case brkStep:
			out = append(out, p)
		case []brkStep:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("brkScript: %T", p))
		}
	}
	return out
}

func brkRun(t *testing.T, b *Breaker, clock *brkClock, steps []brkStep) {
	t.Helper()
	tickets := map[string]Ticket{}
	for i, s := range steps {
		msg := fmt.Sprintf("step %d: %s", i, s)
		switch s.op {
		case brkOpCall:
			tk, err := b.Allow()
			require.NoError(t, err, msg)
			b.Record(tk, s.err)
		case brkOpTake:
			tk, err := b.Allow()
			require.NoError(t, err, msg)
			tickets[s.name] = tk
		case brkOpGive:
			tk, ok := tickets[s.name]
			require.True(t, ok, msg)
			delete(tickets, s.name)
			b.Record(tk, s.err)
		case brkOpRefuse:
			tk, err := b.Allow()
			require.Equal(t, Ticket{}, tk, msg)
			var rej *RejectedError
			require.ErrorAs(t, err, &rej, msg)
			require.Equal(t, s.reason, rej.Reason, msg)
			require.Equal(t, s.retry, rej.RetryAfter, msg)
			require.Equal(t, b.name, rej.Name, msg)
			require.ErrorIs(t, err, ErrOpen, msg)
			require.ErrorIs(t, err, ErrRejected, msg)
			require.ErrorIs(t, err, consumer.ErrDeferred, msg)
		case brkOpTick:
			clock.advance(s.d)
		case brkOpOpen:
			b.Open()
		case brkOpClose:
			b.Close()
		case brkOpRecord0:
			b.Record(Ticket{}, s.err)
		}
		require.Equal(t, s.want, b.State(), msg)
		require.Equal(t, s.wantDelay, b.RemainingDelay(), msg)
	}
}

func TestBreakerScripts(t *testing.T) {
	const (
		open    = breakerReasonOpen
		probing = breakerReasonProbing
	)
	canceled := context.Canceled
	wrappedCancel := fmt.Errorf("query: %w", context.Canceled)

	tests := []struct {
		name  string
		opts  BreakerOptions
		steps []brkStep
	}{
		{
			name: "consecutive failures trip it; a success resets the run",
			opts: BreakerOptions{Name: "db"}, // defaults: 5 failures, 30s open
			steps: brkScript(
				brkRepeat(4, brkCall(errBrkDown, StateClosed)),
				brkCall(nil, StateClosed),
				brkRepeat(4, brkCall(errBrkDown, StateClosed)),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "open: rejects with the remaining delay, then lets one probe through and closes",
			opts: BreakerOptions{Name: "db"},
			steps: brkScript(
				brkRepeat(4, brkCall(errBrkDown, StateClosed)),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
				brkRefuse(open, 30*time.Second, StateOpen).delay(30*time.Second),
				brkTick(10*time.Second, StateOpen).delay(20*time.Second),
				brkRefuse(open, 20*time.Second, StateOpen).delay(20*time.Second),
				brkTick(19*time.Second+999*time.Millisecond, StateOpen).delay(time.Millisecond),
				brkTick(500*time.Microsecond, StateOpen).delay(500*time.Microsecond),
				brkRefuse(open, time.Millisecond, StateOpen).delay(500*time.Microsecond), // RetryAfter is at least 1ms
				brkTick(500*time.Microsecond, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkGive("probe", nil, StateClosed),
				brkCall(nil, StateClosed),
				// Closing forgot the failures: it takes 5 again.
				brkRepeat(4, brkCall(errBrkDown, StateClosed)),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "a failed probe reopens it for a fresh OpenTimeout",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkTick(3*time.Second, StateHalfOpen),
				brkGive("probe", errBrkDown, StateOpen).delay(10*time.Second),
				brkRefuse(open, 10*time.Second, StateOpen).delay(10*time.Second),
				brkTick(9*time.Second, StateOpen).delay(time.Second),
				brkTick(time.Second, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkGive("probe", nil, StateClosed),
			),
		},
		{
			name: "half-open lets HalfOpenProbes calls through; all must succeed",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second, HalfOpenProbes: 3},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTake("a", StateHalfOpen),
				brkTake("b", StateHalfOpen),
				brkTake("c", StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkGive("a", nil, StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen), // a success does not free a slot
				brkGive("b", nil, StateHalfOpen),
				brkGive("c", nil, StateClosed),
				// Now one failure among the probes reopens it, and the
				// later probe's success is stale.
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTake("a", StateHalfOpen),
				brkTake("b", StateHalfOpen),
				brkTake("c", StateHalfOpen),
				brkGive("a", nil, StateHalfOpen),
				brkGive("b", errBrkDown, StateOpen).delay(10*time.Second),
				brkGive("c", nil, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTake("x", StateHalfOpen),
				brkTake("y", StateHalfOpen),
				brkTake("z", StateHalfOpen),
				brkGive("x", nil, StateHalfOpen),
				brkGive("y", nil, StateHalfOpen),
				brkGive("z", nil, StateClosed),
			),
		},
		{
			name: "a probe not recorded within OpenTimeout is presumed lost",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTick(5*time.Second, StateHalfOpen), // counted from the probe, not from turning half-open
				brkTake("hung", StateHalfOpen),
				brkTick(10*time.Second-time.Nanosecond, StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkTick(time.Nanosecond, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkGive("probe", nil, StateClosed),
			),
		},
		{
			name: "the failure ratio trips it once MinRequests results are in the window",
			opts: BreakerOptions{ConsecutiveFailures: math.MaxInt, FailureRatio: 0.5, MinRequests: 10},
			steps: brkScript(
				brkRepeat(9, brkCall(errBrkDown, StateClosed)), // 9/9 failed, but fewer than MinRequests
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "the ratio counts successes too, and the success reaching MinRequests can trip it",
			opts: BreakerOptions{ConsecutiveFailures: math.MaxInt, FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second},
			steps: brkScript(
				brkRepeat(5, brkCall(errBrkDown, StateClosed)),
				// 9.999s later the first bucket is still in the window.
				brkTick(10*time.Second-time.Millisecond, StateClosed),
				brkRepeat(4, brkCall(nil, StateClosed)),
				brkCall(nil, StateOpen).delay(30*time.Second), // 5 of 10 failed
			),
		},
		{
			name: "old buckets roll out of the window",
			opts: BreakerOptions{ConsecutiveFailures: math.MaxInt, FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second},
			steps: brkScript(
				brkRepeat(5, brkCall(errBrkDown, StateClosed)),
				brkTick(10*time.Second, StateClosed), // those 5 failures are out of the window now
				brkRepeat(5, brkCall(nil, StateClosed)),
				brkRepeat(4, brkCall(errBrkDown, StateClosed)), // 4 of 9
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "the window rolls in steps of a tenth",
			opts: BreakerOptions{ConsecutiveFailures: math.MaxInt, FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second},
			steps: brkScript(
				brkRepeat(4, brkCall(errBrkDown, StateClosed)), // t=0
				brkTick(5*time.Second, StateClosed),
				brkRepeat(4, brkCall(errBrkDown, StateClosed)),       // t=5s: 8 of 8, fewer than MinRequests
				brkTick(5*time.Second, StateClosed),                  // t=10s: the first 4 roll out, the next 4 stay
				brkRepeat(6, brkCall(nil, StateClosed)),              // 4 of 10
				brkCall(errBrkDown, StateClosed),                     // 5 of 11
				brkCall(errBrkDown, StateOpen).delay(30*time.Second), // 6 of 12
			),
		},
		{
			name: "consecutive failures still trip it when the ratio is on",
			opts: BreakerOptions{ConsecutiveFailures: 3, FailureRatio: 0.9, MinRequests: 100},
			steps: brkScript(
				brkRepeat(2, brkCall(errBrkDown, StateClosed)),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "context.Canceled is neither a success nor a failure",
			opts: BreakerOptions{ConsecutiveFailures: 2},
			steps: brkScript(
				brkCall(errBrkDown, StateClosed),
				brkCall(canceled, StateClosed),                       // not a failure...
				brkCall(wrappedCancel, StateClosed),                  // ...even wrapped...
				brkCall(errBrkDown, StateOpen).delay(30*time.Second), // ...and not a success: the run went on
			),
		},
		{
			name: "context.DeadlineExceeded is a failure",
			opts: BreakerOptions{ConsecutiveFailures: 1},
			steps: brkScript(
				brkCall(fmt.Errorf("query: %w", context.DeadlineExceeded), StateOpen).delay(30 * time.Second),
			),
		},
		{
			name: "a cancelled probe frees its slot",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(time.Second),
				brkTick(time.Second, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkGive("probe", canceled, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkGive("probe", nil, StateClosed),
			),
		},
		{
			name: "a custom IsFailure: not-found is a success",
			opts: BreakerOptions{ConsecutiveFailures: 2, IsFailure: func(err error) bool {
				return !errors.Is(err, errBrkNotFound) && !errors.Is(err, context.Canceled)
			}},
			steps: brkScript(
				brkCall(errBrkDown, StateClosed),
				brkCall(errBrkNotFound, StateClosed), // a success: resets the run
				brkCall(errBrkDown, StateClosed),
				brkCall(canceled, StateClosed), // still ignored
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "a custom IsFailure can count cancellation as a failure",
			opts: BreakerOptions{ConsecutiveFailures: 2, IsFailure: func(error) bool { return true }},
			steps: brkScript(
				brkCall(canceled, StateClosed),
				brkCall(canceled, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "results admitted before a transition are ignored",
			opts: BreakerOptions{ConsecutiveFailures: 2},
			steps: brkScript(
				brkTake("slow", StateClosed),
				brkTake("slower", StateClosed),
				brkCall(errBrkDown, StateClosed),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
				brkTick(5*time.Second, StateOpen).delay(25*time.Second),
				brkGive("slow", errBrkDown, StateOpen).delay(25*time.Second), // no fresh timeout
				brkTick(25*time.Second, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkGive("slower", nil, StateHalfOpen), // not taken for the probe's success
				brkRefuse(probing, time.Second, StateHalfOpen),
				brkGive("probe", nil, StateClosed),
				brkTake("late", StateClosed),
				brkCall(errBrkDown, StateClosed),
				brkOpenStep().delay(30*time.Second),
				brkCloseStep(),
				brkGive("late", errBrkDown, StateClosed), // admitted before Open: ignored
				brkCall(errBrkDown, StateClosed),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "the zero Ticket is ignored",
			opts: BreakerOptions{ConsecutiveFailures: 1},
			steps: brkScript(
				brkStep{op: brkOpRecord0, err: errBrkDown, want: StateClosed},
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
		{
			name: "Open rejects at once, even closed with no failures, and stays open until Close",
			opts: BreakerOptions{ConsecutiveFailures: 2, OpenTimeout: 10 * time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateClosed),
				brkOpenStep().delay(10*time.Second), // a hint: OpenTimeout
				brkRefuse(open, 10*time.Second, StateOpen).delay(10*time.Second),
				brkTick(time.Hour, StateOpen).delay(10*time.Second),
				brkRefuse(open, 10*time.Second, StateOpen).delay(10*time.Second),
				brkCloseStep(),
				brkCall(errBrkDown, StateClosed), // Close forgot the earlier failure
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
			),
		},
		{
			name: "Open on a tripped breaker keeps it open past OpenTimeout",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(4*time.Second, StateOpen).delay(6*time.Second),
				brkOpenStep().delay(10*time.Second),
				brkTick(time.Minute, StateOpen).delay(10*time.Second),
				brkCloseStep(),
				brkCall(nil, StateClosed),
			),
		},
		{
			name: "Open while half-open makes the probe's result stale",
			opts: BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 10 * time.Second},
			steps: brkScript(
				brkCall(errBrkDown, StateOpen).delay(10*time.Second),
				brkTick(10*time.Second, StateHalfOpen),
				brkTake("probe", StateHalfOpen),
				brkOpenStep().delay(10*time.Second),
				brkGive("probe", nil, StateOpen).delay(10*time.Second),
				brkCloseStep(),
			),
		},
		{
			name: "Close on a closed breaker forgets the failures",
			opts: BreakerOptions{ConsecutiveFailures: 2},
			steps: brkScript(
				brkCall(errBrkDown, StateClosed),
				brkCloseStep(),
				brkCall(errBrkDown, StateClosed),
				brkCall(errBrkDown, StateOpen).delay(30*time.Second),
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newBrkClock()
			b := newTestBreaker(t, tt.opts, clock)
			require.Equal(t, StateClosed, b.State())
			brkRun(t, b, clock, tt.steps)
		})
	}
}

func TestBreakerReportsTransitionsInOrder(t *testing.T) {
	clock := newBrkClock()
	obs := &brkObserver{}
	var seen brkTransitions
	b := newTestBreaker(t, BreakerOptions{
		Name:                "payments",
		ConsecutiveFailures: 2,
		OpenTimeout:         10 * time.Second,
		Observer:            obs,
		OnStateChange:       seen.record,
	}, clock)

	brkRun(t, b, clock, brkScript(
		brkCall(errBrkDown, StateClosed),
		brkCall(errBrkDown, StateOpen).delay(10*time.Second), // closed → open
		brkRefuse(breakerReasonOpen, 10*time.Second, StateOpen).delay(10*time.Second),
		brkTick(10*time.Second, StateHalfOpen), // open → half-open
		brkTake("probe", StateHalfOpen),
		brkRefuse(breakerReasonProbing, time.Second, StateHalfOpen),
		brkGive("probe", errBrkDown, StateOpen).delay(10*time.Second), // half-open → open
		brkTick(10*time.Second, StateHalfOpen),                        // open → half-open
		brkTake("probe", StateHalfOpen),
		brkGive("probe", nil, StateClosed),  // half-open → closed
		brkOpenStep().delay(10*time.Second), // closed → open
		brkRefuse(breakerReasonOpen, 10*time.Second, StateOpen).delay(10*time.Second),
		brkOpenStep().delay(10*time.Second), // no transition
		brkCloseStep(),                      // open → closed
		brkCloseStep(),                      // no transition
	))

	require.Equal(t, []brkTransition{
		{"payments", StateClosed, StateOpen},
		{"payments", StateOpen, StateHalfOpen},
		{"payments", StateHalfOpen, StateOpen},
		{"payments", StateOpen, StateHalfOpen},
		{"payments", StateHalfOpen, StateClosed},
		{"payments", StateClosed, StateOpen},
		{"payments", StateOpen, StateClosed},
	}, seen.list())
	require.EqualValues(t, 7, obs.get(MetricBreakerTransitions))
	require.EqualValues(t, 3, obs.get(MetricBreakerRejects))
	require.EqualValues(t, 0, obs.get(MetricBreakerState))
	require.EqualValues(t, 0, obs.gaugeMin)
	require.EqualValues(t, 1, obs.gaugeMax)

	b.Open()
	require.EqualValues(t, 1, obs.get(MetricBreakerState))
	require.EqualValues(t, 8, obs.get(MetricBreakerTransitions))
}

func TestBreakerOnStateChangeMayCallTheBreaker(t *testing.T) {
	clock := newBrkClock()
	var b *Breaker
	var states []State
	b = newTestBreaker(t, BreakerOptions{
		ConsecutiveFailures: 1,
		OnStateChange: func(_ string, _, to State) {
			states = append(states, b.State()) // would deadlock if called under the lock
			if to == StateOpen {
				b.Close() // a transition from inside the callback is reported after this one
			}
		},
	}, clock)
	tk, err := b.Allow()
	require.NoError(t, err)
	b.Record(tk, errBrkDown)
	require.Equal(t, StateClosed, b.State())
	require.Equal(t, []State{StateOpen, StateClosed}, states)
}

func TestBreakerDo(t *testing.T) {
	ctx := context.Background()
	clock := newBrkClock()
	obs := &brkObserver{}
	b := newTestBreaker(t, BreakerOptions{Name: "search", ConsecutiveFailures: 2, Observer: obs}, clock)

	calls := 0
	fn := func(err error) func(context.Context) error {
		return func(context.Context) error { calls++; return err }
	}
	require.NoError(t, b.Do(ctx, fn(nil)))
	require.ErrorIs(t, b.Do(ctx, fn(errBrkDown)), errBrkDown)

	// A context already done leaves the breaker alone and does not call fn.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, b.Do(cctx, fn(nil)), context.Canceled)
	require.Equal(t, 2, calls)

	// A panic counts as a failure: the second failure in a row trips it.
	require.PanicsWithValue(t, "boom", func() {
		_ = b.Do(ctx, func(context.Context) error { panic("boom") })
	})
	require.Equal(t, StateOpen, b.State())

	err := b.Do(ctx, fn(nil))
	require.Equal(t, 2, calls, "fn must not run while open")
	require.ErrorIs(t, err, ErrOpen)
	require.ErrorIs(t, err, ErrRejected)
	require.ErrorIs(t, err, consumer.ErrDeferred)
	d, ok := RetryAfterHint(err)
	require.True(t, ok)
	require.Equal(t, 30*time.Second, d)
	require.EqualError(t, err, "backpressure: search rejected: circuit open (retry after 30s)")
	require.EqualValues(t, 1, obs.get(MetricBreakerRejects))

	clock.advance(30 * time.Second)
	require.NoError(t, b.Do(ctx, fn(nil)))
	require.Equal(t, StateClosed, b.State())
	require.Equal(t, 3, calls)
}

func TestNewBreakerOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts BreakerOptions
	}{
		{"negative ConsecutiveFailures", BreakerOptions{ConsecutiveFailures: -1}},
		{"negative FailureRatio", BreakerOptions{FailureRatio: -0.1}},
		{"FailureRatio above 1", BreakerOptions{FailureRatio: 1.01}},
		{"NaN FailureRatio", BreakerOptions{FailureRatio: math.NaN()}},
		{"negative MinRequests", BreakerOptions{MinRequests: -1}},
		{"negative Window", BreakerOptions{Window: -time.Second}},
		{"negative OpenTimeout", BreakerOptions{OpenTimeout: -time.Second}},
		{"negative HalfOpenProbes", BreakerOptions{HalfOpenProbes: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBreaker(tt.opts)
			require.Error(t, err)
			require.Nil(t, b)
		})
	}

	b, err := NewBreaker(BreakerOptions{})
	require.NoError(t, err)
	require.Equal(t, StateClosed, b.State())
	require.Equal(t, time.Duration(0), b.RemainingDelay())
	c := b.cfg
	require.Equal(t, 5, c.consecutive)
	require.Equal(t, 0.0, c.ratio)
	require.Equal(t, 20, c.minRequests)
	require.Equal(t, time.Second, c.bucketWidth)
	require.Equal(t, 30*time.Second, c.openTimeout)
	require.Equal(t, 1, c.probes)

	_, err = NewBreaker(BreakerOptions{FailureRatio: 1, Window: time.Minute, HalfOpenProbes: 4})
	require.NoError(t, err)
}

func TestBreakerStateString(t *testing.T) {
	require.Equal(t, "closed", StateClosed.String())
	require.Equal(t, "open", StateOpen.String())
	require.Equal(t, "half-open", StateHalfOpen.String())
	require.Equal(t, "State(7)", State(7).String())
}

func TestBreakerAllowRecordAllocatesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts BreakerOptions
	}{
		{"defaults", BreakerOptions{}},
		{"ratio", BreakerOptions{FailureRatio: 0.9, MinRequests: 1 << 30}},
		{"observed", BreakerOptions{Observer: &brkObserver{}, OnStateChange: func(string, State, State) {}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBreaker(tt.opts)
			require.NoError(t, err)
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				tk, err := b.Allow()
				if err != nil {
					panic(err)
				}
				i++
				if i%2 == 0 {
					b.Record(tk, errBrkDown) // never two in a row: it stays closed
				} else {
					b.Record(tk, nil)
				}
			})
			require.Zero(t, allocs)

			ctx := context.Background()
			fn := func(context.Context) error { return nil }
			allocs = testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, fn) })
			require.Zero(t, allocs, "Do")
			require.Equal(t, StateClosed, b.State())
		})
	}
}

// TestBreakerConcurrent hammers one breaker from 64 goroutines; the
// transitions it reports must form one valid chain, and the counts must
// add up.
func TestBreakerConcurrent(t *testing.T) {
	const (
		goroutines = 64
		calls      = 500
	)
	clock := newBrkClock()
	obs := &brkObserver{}
	var seen brkTransitions
	b := newTestBreaker(t, BreakerOptions{
		Name:                "hammered",
		ConsecutiveFailures: 3,
		FailureRatio:        0.4,
		MinRequests:         10,
		Window:              100 * time.Millisecond,
		OpenTimeout:         20 * time.Millisecond,
		HalfOpenProbes:      2,
		Observer:            obs,
		OnStateChange:       seen.record,
	}, clock)

	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				clock.advance(50 * time.Microsecond)
				var err error
				switch (g*7 + i) % 10 {
				case 0, 1, 2, 3:
					err = errBrkDown
				case 4:
					err = context.Canceled
				}
				if i%3 == 0 {
					_ = b.Do(ctx, func(context.Context) error { return err })
					continue
				}
				tk, aerr := b.Allow()
				if aerr == nil {
					b.Record(tk, err)
				}
				_ = b.State()
			}
		}()
	}
	wg.Wait()

	got := seen.list()
	require.NotEmpty(t, got)
	valid := map[[2]State]bool{
		{StateClosed, StateOpen}:     true,
		{StateOpen, StateHalfOpen}:   true,
		{StateHalfOpen, StateOpen}:   true,
		{StateHalfOpen, StateClosed}: true,
	}
	prev := StateClosed
	for i, tr := range got {
		require.Equal(t, prev, tr.from, "transition %d", i)
		require.True(t, valid[[2]State{tr.from, tr.to}], "transition %d: %s → %s", i, tr.from, tr.to)
		prev = tr.to
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	require.Equal(t, prev, b.state)
	require.Zero(t, b.inflight)
	require.False(t, b.notifying)
	require.EqualValues(t, len(got), obs.get(MetricBreakerTransitions))
	wantGauge := int64(0)
	if b.state == StateOpen {
		wantGauge = 1
	}
	require.Equal(t, wantGauge, obs.get(MetricBreakerState))
	require.EqualValues(t, 0, obs.gaugeMin)
	require.EqualValues(t, 1, obs.gaugeMax)
}
