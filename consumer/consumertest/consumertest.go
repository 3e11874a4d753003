package consumertest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// Factory makes a fresh, empty queue for one check, whose leases (visibility
// timeouts) last lease, and returns its consuming and publishing sides. It
// registers whatever cleanup the queue needs with t.Cleanup, and fails t if
// it cannot make the queue. It is called concurrently.
type Factory func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher)

// Options tunes the suite for drivers whose backends are slower or coarser
// than memory. Zero fields mean the defaults given below.
type Options struct {
	// Lease is the lease of the queues in the checks where a lease must
	// expire, or must be seen not to: round trip, Ack, lease expiry and
	// Extend (which uses two). Nack's delay in its check is 1.5 leases.
	// Default 400ms.
	//
	// The other checks use a lease of three Waits (at least 30s), so that
	// a redelivery they see can only come from the Nack under test.
	Lease time.Duration

	// Wait bounds how long a check waits for something that should
	// happen, such as a redelivery or a blocked Fetch returning. Passing
	// checks do not wait this long. Default 10s, and never less than four
	// leases.
	Wait time.Duration

	// Tolerance is how far the local clock may disagree with the backend's
	// timing: a redelivery may arrive this much before its time, and a
	// Deadline may be this much later than one lease after the call that
	// set it. Default 50ms.
	Tolerance time.Duration

	// Messages is how many messages the concurrent-consumers check
	// publishes. Default 500.
	Messages int

	// Consumers is how many goroutines fetch at once in the
	// concurrent-consumers check. Default 8.
	Consumers int
}

// Run runs every conformance check against queues made by newQueue, each as
// a parallel sub-test of t, with the default [Options]. It returns when all
// of them have finished.
func Run(t *testing.T, newQueue Factory) {
	t.Helper()
	RunWithOptions(t, newQueue, Options{})
}

// RunWithOptions is [Run] with tuning for slower backends.
func RunWithOptions(t *testing.T, newQueue Factory, opts Options) {
	t.Helper()
	require.NotNil(t, newQueue, "consumertest: nil Factory")
	s, err := newSuite(newQueue, opts)
	require.NoError(t, err)

	// The group makes Run synchronous: parallel sub-tests of t itself would
	// only start after the caller's test function returned, and after its
	// deferred calls had released what the factory uses.
	t.Run("Source", func(t *testing.T) {
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(s, t)
			})
		}
	})
}

var checks = []struct {
	name string
	run  func(*suite, *testing.T)
}{
	{"RoundTrip", (*suite).roundTrip},
	{"EmptyIDIsGenerated", (*suite).emptyID},
	{"FetchRespectsMax", (*suite).fetchMax},
	{"FetchBlocksUntilPublish", (*suite).fetchBlocks},
	{"FetchHonoursCancel", (*suite).fetchCancel},
	{"AckRemoves", (*suite).ackRemoves},
	{"NackRedelivers", (*suite).nackRedelivers},
	{"NackDelay", (*suite).nackDelay},
	{"LeaseExpires", (*suite).leaseExpires},
	{"ExtendKeepsLease", (*suite).extendKeeps},
	{"ConcurrentConsumers", (*suite).concurrent},
	{"AttemptsAccumulate", (*suite).attempts},
}

type suite struct {
	newQueue Factory

	lease     time.Duration // for checks about expiry
	longLease time.Duration // for checks where an expiry would hide a bug
	wait      time.Duration
	tol       time.Duration
	messages  int
	consumers int
}

func newSuite(f Factory, o Options) (*suite, error) {
	if o.Lease < 0 || o.Wait < 0 || o.Tolerance < 0 || o.Messages < 0 || o.Consumers < 0 {
		return nil, fmt.Errorf("consumertest: negative Options field: %+v", o)
	}
	s := &suite{
		newQueue:  f,
		lease:     cmp.Or(o.Lease, 400*time.Millisecond),
		wait:      cmp.Or(o.Wait, 10*time.Second),
		tol:       cmp.Or(o.Tolerance, 50*time.Millisecond),
		messages:  cmp.Or(o.Messages, 500),
		consumers: cmp.Or(o.Consumers, 8),
	}
	s.wait = max(s.wait, 4*s.lease)
	s.longLease = max(30*time.Second, 3*s.wait)
	return s, nil
}

// queue is one queue made by the factory, with the lease it was made with.
type queue struct {
	s     *suite
	src   consumer.Source
	pub   consumer.Publisher
	lease time.Duration
}

func (s *suite) queue(t *testing.T, lease time.Duration) *queue {
	t.Helper()
	src, pub := s.newQueue(t, lease)
	require.NotNil(t, src, "factory returned a nil Source")
	require.NotNil(t, pub, "factory returned a nil Publisher")
	return &queue{s: s, src: src, pub: pub, lease: lease}
}

// ctx is the context for one Publish, Ack, Nack or Extend.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.wait)
	t.Cleanup(cancel)
	return ctx
}

// publish publishes copies of msgs, so that the checks compare what comes
// back with what they meant to send even if Publish writes to its
// arguments.
func (q *queue) publish(t *testing.T, msgs ...consumer.Message) {
	t.Helper()
	cp := make([]consumer.Message, len(msgs))
	for i, m := range msgs {
		m.Body = slices.Clone(m.Body)
		m.Headers = maps.Clone(m.Headers)
		cp[i] = m
	}
	require.NoError(t, q.pub.Publish(q.s.ctx(t), cp...), "Publish")
}

// fetch waits for between 1 and limit deliveries, and checks that each is
// well formed and leased for about the queue's lease.
func (q *queue) fetch(t *testing.T, limit int) []consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), q.s.wait)
	defer cancel()
	before := time.Now()
	ds, err := q.src.Fetch(ctx, limit)
	after := time.Now()
	require.NoError(t, err, "Fetch(max=%d) got no message within %s, but one was due", limit, q.s.wait)
	require.NotEmpty(t, ds, "Fetch returned neither deliveries nor an error")
	require.LessOrEqual(t, len(ds), limit, "Fetch returned more deliveries than max=%d: %s", limit, describe(ds))
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		require.NotNil(t, d, "Fetch returned a nil Delivery")
		m := d.Message()
		require.NotNil(t, m, "Delivery.Message returned nil")
		require.False(t, seen[m.ID], "Fetch returned message %q twice in one batch: %s", m.ID, describe(ds))
		seen[m.ID] = true
		require.Same(t, m, d.Message(), "Delivery.Message must return the same pointer each time")
		require.NotEmpty(t, m.ID, "delivered message has an empty ID")
		require.GreaterOrEqual(t, m.Attempt, 1, "message %q delivered with Attempt %d", m.ID, m.Attempt)
		q.requireDeadline(t, d, before, after, "Fetch")
	}
	return ds
}

func (q *queue) fetchOne(t *testing.T) consumer.Delivery {
	t.Helper()
	return q.fetch(t, 1)[0]
}

// requireDeadline checks that d's Deadline is one lease after an operation
// that ran from before to after. It may be earlier than that (a cautious
// driver may allow for round trips) but not much, and it must not be later:
// a runtime would go on believing it holds a lease that has ended.
func (q *queue) requireDeadline(t *testing.T, d consumer.Delivery, before, after time.Time, op string) {
	t.Helper()
	id := d.Message().ID
	dl := d.Deadline()
	require.False(t, dl.IsZero(),
		"%s of %q: Deadline is the zero time (never expires), but the queue's lease is %s", op, id, q.lease)
	require.False(t, dl.Before(before.Add(q.lease/2)),
		"%s of %q: Deadline %s is less than half the %s lease after the call began (%s)",
		op, id, dl.Format(time.RFC3339Nano), q.lease, before.Format(time.RFC3339Nano))
	require.False(t, dl.After(after.Add(q.lease+q.s.tol)),
		"%s of %q: Deadline %s is later than one %s lease after the call returned (%s)",
		op, id, dl.Format(time.RFC3339Nano), q.lease, after.Format(time.RFC3339Nano))
}

// expectNothing checks that Fetch gets nothing for d, returning the
// context's error.
func (q *queue) expectNothing(t *testing.T, d time.Duration, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	ds, err := q.src.Fetch(ctx, 10)
	require.Empty(t, ds, "%s, but Fetch within %s returned %s", why, d, describe(ds))
	require.ErrorIs(t, err, context.DeadlineExceeded,
		"Fetch on a queue with nothing to deliver must return its context's error when it times out")
}

func (q *queue) ack(t *testing.T, d consumer.Delivery) {
	t.Helper()
	require.NoError(t, d.Ack(q.s.ctx(t)), "Ack of %q, attempt %d, within its lease", d.Message().ID, d.Message().Attempt)
}

// requireLeaseLost checks that every operation on d, whose lease has ended
// (why), fails with ErrLeaseLost.
func (q *queue) requireLeaseLost(t *testing.T, d consumer.Delivery, why string) {
	t.Helper()
	id := d.Message().ID
	require.ErrorIs(t, d.Ack(q.s.ctx(t)), consumer.ErrLeaseLost, "Ack of %q after %s", id, why)
	require.ErrorIs(t, d.Nack(q.s.ctx(t), 0), consumer.ErrLeaseLost, "Nack of %q after %s", id, why)
	require.ErrorIs(t, d.Extend(q.s.ctx(t)), consumer.ErrLeaseLost, "Extend of %q after %s", id, why)
}

func requireSameMessage(t *testing.T, want, got *consumer.Message) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "ID")
	require.Equal(t, want.Key, got.Key, "Key of %q", want.ID)
	require.Equal(t, want.Body, got.Body, "Body of %q", want.ID)
	if len(want.Headers) == 0 { // nil and empty are the same to a handler
		require.Empty(t, got.Headers, "Headers of %q", want.ID)
	} else {
		require.Equal(t, want.Headers, got.Headers, "Headers of %q", want.ID)
	}
}

func describe(ds []consumer.Delivery) string {
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		if d == nil || d.Message() == nil {
			parts = append(parts, "<nil>")
			continue
		}
		parts = append(parts, fmt.Sprintf("%q (attempt %d)", d.Message().ID, d.Message().Attempt))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// sleep pauses to let a blocking call get under way or to pace Extends;
// checks never sleep to wait for an outcome.
func sleep(t *testing.T, d time.Duration) {
	select {
	case <-time.After(d):
	case <-t.Context().Done():
	}
}

type fetchResult struct {
	ds  []consumer.Delivery
	err error
}

// goFetch runs Fetch in a goroutine that is over before t's cleanup, which
// may close the queue, runs.
func goFetch(t *testing.T, ctx context.Context, src consumer.Source, limit int) <-chan fetchResult {
	ch := make(chan fetchResult, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // t.Context is cancelled before cleanups run
	wg.Go(func() {
		ds, err := src.Fetch(ctx, limit)
		ch <- fetchResult{ds, err}
	})
	return ch
}

func (s *suite) roundTrip(t *testing.T) {
	q := s.queue(t, s.lease)
	enqueued := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	want := []consumer.Message{{
		ID:      "round-trip-1",
		Key:     "order-1",
		Body:    []byte(`{"order":1}`),
		Headers: map[string]string{"content-type": "application/json", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}, {
		ID:      "round-trip-2",
		Key:     "order-2",
		Body:    []byte{0x00, 0xff, 0xfe, '\n', 0x80, '"', '\\', 0x00},
		Headers: map[string]string{"x-unicode": "héllo, 世界", "x-empty": ""},
		Attempt: 7, // ignored by Publish
	}, {
		ID:         "round-trip-3",
		Key:        "order-3",
		Body:       []byte("three"),
		Headers:    map[string]string{"a": "1", "b": "2", "c": "3"},
		EnqueuedAt: enqueued, // kept by Publish
	}}
	q.publish(t, want...)

	got := map[string]consumer.Delivery{}
	for len(got) < len(want) {
		for _, d := range q.fetch(t, len(want)) {
			m := d.Message()
			require.NotContains(t, got, m.ID, "message %q delivered twice within its lease", m.ID)
			got[m.ID] = d
		}
	}
	for i := range want {
		w := &want[i]
		d, ok := got[w.ID]
		require.True(t, ok, "message %q published but not delivered; got %v", w.ID, slices.Sorted(maps.Keys(got)))
		m := d.Message()
		requireSameMessage(t, w, m)
		require.Equal(t, 1, m.Attempt, "Attempt of %q on its first delivery", w.ID)
		if w.EnqueuedAt.IsZero() {
			require.WithinDuration(t, time.Now(), m.EnqueuedAt, time.Minute,
				"EnqueuedAt of %q, published without one, must be set to the publish time", w.ID)
		} else {
			require.WithinDuration(t, w.EnqueuedAt, m.EnqueuedAt, time.Millisecond,
				"EnqueuedAt of %q, published with one, must be kept", w.ID)
		}
	}
	for _, d := range got {
		q.ack(t, d)
	}
	q.expectNothing(t, 2*s.lease, "every message was acknowledged")
}

func (s *suite) emptyID(t *testing.T) {
	q := s.queue(t, s.longLease)
	q.publish(t, consumer.Message{Body: []byte("a")}, consumer.Message{Body: []byte("b")})
	q.publish(t, consumer.Message{Body: []byte("c")})

	ids := map[string]string{} // body → ID
	for len(ids) < 3 {
		for _, d := range q.fetch(t, 3) {
			m := d.Message()
			require.NotContains(t, ids, string(m.Body), "message %q delivered twice within its lease", m.Body)
			ids[string(m.Body)] = m.ID
			q.ack(t, d)
		}
	}
	require.NotEqual(t, ids["a"], ids["b"], "two messages published together without IDs got the same ID")
	require.NotEqual(t, ids["a"], ids["c"], "two messages published apart without IDs got the same ID")
	require.NotEqual(t, ids["b"], ids["c"], "two messages published apart without IDs got the same ID")
}

func (s *suite) fetchMax(t *testing.T) {
	const n, limit = 10, 3
	q := s.queue(t, s.longLease)
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("max-%02d", i), Body: []byte{byte(i)}}
	}
	q.publish(t, msgs...)

	held := map[string]consumer.Delivery{}
	for len(held) < n {
		for _, d := range q.fetch(t, limit) { // fetch checks 1 <= len <= limit
			id := d.Message().ID
			require.NotContains(t, held, id, "message %q delivered twice within its lease", id)
			held[id] = d
		}
	}
	q.expectNothing(t, s.lease, "all 10 messages are held")
	for _, d := range held {
		q.ack(t, d)
	}
}

func (s *suite) fetchBlocks(t *testing.T) {
	q := s.queue(t, s.longLease)
	ctx, cancel := context.WithTimeout(t.Context(), s.wait)
	defer cancel()
	res := goFetch(t, ctx, q.src, 1)

	sleep(t, s.lease/2)
	select {
	case r := <-res:
		require.Failf(t, "Fetch on an empty queue returned", "returned %s, %v before anything was published", describe(r.ds), r.err)
	default:
	}

	want := consumer.Message{ID: "wake-up", Key: "k", Body: []byte("hello")}
	q.publish(t, want)
	r := <-res
	require.NoError(t, r.err, "Fetch blocked on an empty queue did not get the message published meanwhile")
	require.Len(t, r.ds, 1, "Fetch(max=1)")
	requireSameMessage(t, &want, r.ds[0].Message())
	require.Equal(t, 1, r.ds[0].Message().Attempt)
	q.ack(t, r.ds[0])
}

func (s *suite) fetchCancel(t *testing.T) {
	q := s.queue(t, s.longLease)

	// Cancelled before the call.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var r fetchResult
	select {
	case r = <-goFetch(t, ctx, q.src, 1):
	case <-time.After(s.wait):
		require.FailNow(t, "Fetch with a cancelled context did not return", "waited %s", s.wait)
	}
	require.Empty(t, r.ds, "Fetch with a cancelled context returned deliveries")
	require.ErrorIs(t, r.err, context.Canceled, "Fetch with a cancelled context must return the context's error")

	// Cancelled while blocked.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	res := goFetch(t, ctx, q.src, 1)
	sleep(t, s.lease/2)
	select {
	case r := <-res:
		require.Failf(t, "Fetch on an empty queue returned", "returned %s, %v before its context was cancelled", describe(r.ds), r.err)
	default:
	}
	cancel()
	select {
	case r = <-res:
	case <-time.After(s.wait):
		require.FailNow(t, "Fetch did not return when its context was cancelled", "waited %s", s.wait)
	}
	require.Empty(t, r.ds, "Fetch whose context was cancelled returned deliveries")
	require.ErrorIs(t, r.err, context.Canceled, "Fetch whose context was cancelled must return the context's error")

	// A cancelled Fetch leaves the queue as it was: it must not go on to
	// take, and lease away, messages published afterwards (as a blocking
	// read left running on the server would).
	const n = 3
	for i := range n {
		q.publish(t, consumer.Message{ID: fmt.Sprintf("after-cancel-%d", i), Body: []byte("x")})
	}
	sleep(t, s.lease/2) // the time a Fetch left running would need to take them
	got := map[string]bool{}
	for len(got) < n {
		for _, d := range q.fetch(t, n) {
			m := d.Message()
			require.False(t, got[m.ID], "message %q delivered twice within its lease", m.ID)
			got[m.ID] = true
			require.Equal(t, 1, m.Attempt, "message %q, published after two cancelled Fetches, was delivered before", m.ID)
			q.ack(t, d)
		}
	}
}

func (s *suite) ackRemoves(t *testing.T) {
	q := s.queue(t, s.lease)
	q.publish(t, consumer.Message{ID: "ack-me", Body: []byte("x")})
	d := q.fetchOne(t)
	q.ack(t, d)

	// Within what would have been the lease, so that a driver that only
	// compares the deadline with the clock does not pass by accident.
	q.requireLeaseLost(t, d, "Ack")
	q.expectNothing(t, 3*s.lease, "the message was acknowledged (and then nacked after its Ack)")
	require.ErrorIs(t, d.Ack(s.ctx(t)), consumer.ErrLeaseLost, "Ack of an acknowledged message after its lease")
}

func (s *suite) nackRedelivers(t *testing.T) {
	q := s.queue(t, s.longLease) // so that only the Nack can bring it back
	want := consumer.Message{ID: "nack-me", Key: "k", Body: []byte{1, 2, 3}, Headers: map[string]string{"h": "v"}}
	q.publish(t, want)
	d1 := q.fetchOne(t)
	require.NoError(t, d1.Nack(s.ctx(t), 0), "Nack within the lease")

	d2 := q.fetchOne(t)
	requireSameMessage(t, &want, d2.Message())
	require.Equal(t, 2, d2.Message().Attempt, "Attempt after one Nack")

	q.requireLeaseLost(t, d1, "Nack and redelivery")
	q.expectNothing(t, s.lease, "the only message is held (a stale Nack must not put it back)")
	before := time.Now()
	require.NoError(t, d2.Extend(s.ctx(t)), "the new holder's Extend after the stale delivery's calls")
	q.requireDeadline(t, d2, before, time.Now(), "Extend")
	q.ack(t, d2)
}

func (s *suite) nackDelay(t *testing.T) {
	delay := 3 * s.lease / 2
	q := s.queue(t, s.longLease) // so that only the Nack can bring it back
	want := consumer.Message{ID: "later", Key: "k", Body: []byte("x")}
	q.publish(t, want)
	d1 := q.fetchOne(t)
	nacked := time.Now()
	require.NoError(t, d1.Nack(s.ctx(t), delay), "Nack within the lease")

	q.expectNothing(t, delay/3, fmt.Sprintf("the message was nacked with a delay of %s", delay))
	d2 := q.fetchOne(t)
	elapsed := time.Since(nacked)
	requireSameMessage(t, &want, d2.Message())
	require.Equal(t, 2, d2.Message().Attempt, "Attempt after one Nack")
	require.GreaterOrEqual(t, elapsed, delay-s.tol, "message nacked with a delay of %s came back after %s", delay, elapsed)

	q.requireLeaseLost(t, d1, "Nack and redelivery")
	q.ack(t, d2)
}

func (s *suite) leaseExpires(t *testing.T) {
	q := s.queue(t, s.lease)
	want := consumer.Message{ID: "forgotten", Key: "k", Body: []byte("x"), Headers: map[string]string{"h": "v"}}
	q.publish(t, want)
	fetched := time.Now()
	d1 := q.fetchOne(t)

	d2 := q.fetchOne(t) // after d1's lease expires
	arrived := time.Now()
	requireSameMessage(t, &want, d2.Message())
	require.Equal(t, 2, d2.Message().Attempt, "Attempt on the redelivery after a lease expired")
	earliest := fetched.Add(s.lease)
	if dl := d1.Deadline(); dl.After(earliest) {
		earliest = dl
	}
	require.False(t, arrived.Before(earliest.Add(-s.tol)),
		"redelivered at %s, before the first delivery's lease ended at %s",
		arrived.Format(time.RFC3339Nano), earliest.Format(time.RFC3339Nano))

	q.requireLeaseLost(t, d1, "its lease expired and the message was redelivered")
	before := time.Now()
	require.NoError(t, d2.Extend(s.ctx(t)), "the new holder's Extend after the stale delivery's calls")
	q.requireDeadline(t, d2, before, time.Now(), "Extend")
	q.expectNothing(t, s.lease/2, "the only message is held (a stale Nack must not put it back)")
	q.ack(t, d2)
	q.expectNothing(t, 2*s.lease, "the message was acknowledged by its new holder")
}

func (s *suite) extendKeeps(t *testing.T) {
	const rounds = 9 // three leases
	// The queue's lease is two of Options.Lease, so that a stall of a
	// tick or two on a busy machine does not let it lapse; Extend still
	// comes every third of that lease.
	q := s.queue(t, 2*s.lease)
	q.publish(t, consumer.Message{ID: "kept", Body: []byte("x")})
	d := q.fetchOne(t)

	ctx, cancel := context.WithTimeout(t.Context(), 3*q.lease)
	defer cancel()
	rival := goFetch(t, ctx, q.src, 1)

	tick := time.NewTicker(q.lease / 3)
	defer tick.Stop()
	for i := range rounds {
		<-tick.C
		prev := d.Deadline()
		before := time.Now()
		require.NoError(t, d.Extend(s.ctx(t)), "Extend %d of %d, each a third of a lease after the last", i+1, rounds)
		q.requireDeadline(t, d, before, time.Now(), "Extend")
		require.True(t, d.Deadline().After(prev), "Extend did not move Deadline forward from %s", prev)
	}

	r := <-rival
	require.Empty(t, r.ds, "another consumer got a message whose lease was being extended")
	require.ErrorIs(t, r.err, context.DeadlineExceeded, "Fetch on a queue whose only message is held")
	q.ack(t, d)
	q.expectNothing(t, 2*q.lease, "the message was acknowledged")
}

func (s *suite) attempts(t *testing.T) {
	const nacks = 4
	q := s.queue(t, s.longLease) // so that only the Nacks can bring it back
	want := consumer.Message{ID: "stubborn", Key: "k", Body: []byte("x"), Headers: map[string]string{"h": "v"}}
	q.publish(t, want)
	for attempt := 1; attempt <= nacks+1; attempt++ {
		d := q.fetchOne(t)
		requireSameMessage(t, &want, d.Message())
		require.Equal(t, attempt, d.Message().Attempt, "Attempt after %d Nacks", attempt-1)
		if attempt <= nacks {
			require.NoError(t, d.Nack(s.ctx(t), 0), "Nack within the lease")
		} else {
			q.ack(t, d)
		}
	}
}

// concurrent has several consumers drain a queue while messages are being
// published, nacking some of them along the way.
func (s *suite) concurrent(t *testing.T) {
	const batch = 10
	n := s.messages
	q := s.queue(t, s.longLease) // no lease may expire: every redelivery is a Nack's

	// Every tenth message is nacked once, every twentieth twice.
	planned := make(map[string]int, n)
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		id := fmt.Sprintf("concurrent-%05d", i)
		msgs[i] = consumer.Message{ID: id, Key: fmt.Sprintf("k%d", i%7), Body: []byte(id)}
		switch {
		case i%20 == 3:
			planned[id] = 2
		case i%10 == 3:
			planned[id] = 1
		default:
			planned[id] = 0
		}
	}

	var (
		mu         sync.Mutex
		held       = map[string]bool{} // fetched and not yet acked or nacked
		nacks      = map[string]int{}
		acks       = map[string]int{}
		ackAttempt = map[string]int{}
		done       int // distinct messages acked
	)
	timeout := 3*s.wait + time.Duration(n)*20*time.Millisecond
	runCtx, stop := context.WithTimeout(t.Context(), timeout)
	defer stop()
	fail := func(format string, args ...any) {
		t.Errorf(format, args...)
		stop()
	}
	opCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(t.Context(), s.wait)
	}

	handle := func(d consumer.Delivery) bool {
		m := d.Message()
		mu.Lock()
		nack := nacks[m.ID] < planned[m.ID]
		if nack {
			nacks[m.ID]++
			delete(held, m.ID) // before the Nack: another consumer may fetch it at once
		}
		mu.Unlock()
		ctx, cancel := opCtx()
		defer cancel()
		if nack {
			if err := d.Nack(ctx, 0); err != nil {
				fail("Nack of %q, attempt %d, within its lease: %v", m.ID, m.Attempt, err)
				return false
			}
			return true
		}
		if err := d.Ack(ctx); err != nil {
			fail("Ack of %q, attempt %d, within its lease: %v", m.ID, m.Attempt, err)
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		delete(held, m.ID) // after the Ack: nobody may fetch it again
		acks[m.ID]++
		ackAttempt[m.ID] = m.Attempt
		if acks[m.ID] == 1 {
			done++
			if done == n {
				stop()
			}
		}
		return true
	}

	consume := func() {
		for runCtx.Err() == nil {
			ds, err := q.src.Fetch(runCtx, batch)
			if err != nil {
				if runCtx.Err() == nil {
					fail("Fetch: %v", err)
				}
				return
			}
			if len(ds) == 0 || len(ds) > batch {
				fail("Fetch(max=%d) returned %d deliveries", batch, len(ds))
				return
			}
			mu.Lock()
			for _, d := range ds {
				id := d.Message().ID
				if _, ok := planned[id]; !ok {
					mu.Unlock()
					fail("delivered %q, which was never published", id)
					return
				}
				if held[id] {
					mu.Unlock()
					fail("message %q delivered (attempt %d) while another consumer held its lease", id, d.Message().Attempt)
					return
				}
				held[id] = true
			}
			mu.Unlock()
			for _, d := range ds {
				if !handle(d) {
					return
				}
			}
		}
	}

	var wg sync.WaitGroup
	for range s.consumers {
		wg.Go(consume)
	}
	for chunk := range slices.Chunk(msgs, 100) {
		ctx, cancel := opCtx()
		err := q.pub.Publish(ctx, chunk...)
		cancel()
		if err != nil {
			fail("Publish: %v", err)
			break
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var missing, twice, wrongAttempt []string
	for id, p := range planned {
		switch {
		case acks[id] == 0:
			missing = append(missing, id)
		case acks[id] > 1:
			twice = append(twice, fmt.Sprintf("%s (%d times)", id, acks[id]))
		case ackAttempt[id] != p+1:
			wrongAttempt = append(wrongAttempt, fmt.Sprintf("%s (nacked %d times, acked at attempt %d)", id, p, ackAttempt[id]))
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "%d of %d messages were never delivered within %s", len(missing), n, timeout)
	require.Empty(t, twice, "messages acknowledged more than once")
	require.Empty(t, wrongAttempt, "Attempt must count deliveries")
	q.expectNothing(t, s.lease, "every message was acknowledged")
}
