// Package consumertest is the conformance suite for queue drivers: any
// [consumer.Source] and [consumer.Publisher] pair, ours or yours, proves that
// it keeps the contract the [consumer.Consumer] runtime relies on by passing
// it.
//
// A driver runs it in one line from an ordinary test, with a [Factory] that
// makes a fresh, empty queue for each check:
//
//	func TestConformance(t *testing.T) {
//		consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
//			q, err := mydriver.New(client, mydriver.Config{Queue: uniqueName(t), Lease: lease})
//			require.NoError(t, err)
//			t.Cleanup(func() { q.Close() })
//			return q, q
//		})
//	}
//
// # What it checks
//
// Round trips keep a message's ID, Key, Body (any bytes), Headers and
// EnqueuedAt; Attempt starts at 1 and grows by one with each redelivery;
// an empty ID is replaced by a unique one; Fetch returns between 1 and max
// deliveries, blocks on an empty queue until a publish and returns the
// context's error when cancelled; Deadline reports the lease; Ack removes
// for good; Nack redelivers at once or after its delay, not earlier; an
// unextended lease expires and the message goes to the next Fetch; Extend
// keeps the message away from other consumers; once a lease has ended, Ack,
// Nack and Extend fail with [consumer.ErrLeaseLost] and do not disturb the
// message's new holder; and under concurrent consumers no message is held by
// two of them at once, lost, or acknowledged twice.
//
// It does not check ordering (the Source contract promises none), durability
// across restarts of the broker, or behaviour across processes whose clocks
// disagree.
//
// # Timing
//
// Checks never require something to happen within a short time: they wait
// for outcomes with Fetch and a timeout of [Options.Wait] (10s by default),
// and finish as soon as the outcome arrives. What they do require is that
// something does not happen too early: a redelivery before the lease ended
// or before a Nack's delay passed, with [Options.Tolerance] (50ms) allowed
// for clock granularity. Checks about expiry use a lease of [Options.Lease]
// (400ms); the others use a lease far longer than any check, so that a
// redelivery they see can only come from the operation under test. A driver
// whose leases or delays have coarse granularity should raise Lease.
//
// # Parallelism
//
// The checks run as parallel sub-tests, so the factory is called
// concurrently and every queue it makes must be independent of the others
// (a unique stream, table or queue name per call). [Run] returns only once
// every check has finished, so resources shared by the factory may be
// released with defer or t.Cleanup alike.
//
// # Load, crash and throughput helpers
//
// Beyond the contract, drivers share three harnesses that run the real
// consumer runtime against them: [Stress] pushes many messages through
// several consumers with planned transient failures and checks each is
// acked exactly once with the right Attempt; [Crash] runs a consumer in a
// child process, kills it with SIGKILL while it holds deliveries, and
// checks a survivor receives every message (the driver's TestCrashChild
// calls [CrashChild]); [Throughput] is the body of a publish-then-consume
// benchmark reporting msgs/s.
package consumertest
