// Package dlq parks messages that cannot be handled, so that a poison
// message neither blocks its queue nor loops forever, and is never lost.
//
// [Middleware] parks a message when its handler returns a permanent error
// or when its last allowed delivery fails, then lets the consumer ack it.
// Parked messages go to a [Store] as an [Entry] with the reason, the error
// chain and the attempts made; operators list, inspect, [Replay] and purge
// them (see examples/dlqctl).
//
// # Guarantees
//
// A message is acked only after its entry was stored: if the store fails,
// the message stays on its queue and comes back. Stores never drop entries
// on their own: an optional cap refuses new entries (counted by the
// middleware as [MetricDeadLetterFailures]) rather than evicting old ones.
// Replay publishes each entry once even when several replays run at once;
// a replay interrupted between publishing and deleting publishes that
// entry again later, which consumers absorb by deduplicating on message ID.
//
// # Attempts
//
// An attempt is a delivery: the delivery numbered MaxAttempts is the last.
// In-process retries by [consumer.Retry] are part of their delivery, so
// the number of deliveries is exactly MaxAttempts whatever the retries do.
//
// [MemoryStore] keeps entries in memory for tests and examples; dlq/dlqpg
// and dlq/dlqredis are durable stores.
package dlq
