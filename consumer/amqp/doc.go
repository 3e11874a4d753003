// Package amqp is a queue driver for RabbitMQ (3.10 or later) on
// github.com/rabbitmq/amqp091-go: a [Source] that consumes a quorum queue
// with manual acknowledgements, and a [Publisher] that publishes to it with
// publisher confirms. Together they keep the [consumer.Source] contract,
// mapped onto what AMQP 0-9-1 offers as described below, and they pass
// package consumertest against a real broker.
//
//	src, err := amqp.New(amqp.Options{URL: url, Queue: "orders", Prefetch: 128})
//	if err != nil { ... }
//	defer src.Close()
//	c, err := consumer.New(src, handler, consumer.Config{MaxInFlight: 128})
//	if err != nil { ... }
//	err = c.Run(ctx)
//
//	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: "orders"})
//	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Body: body})
//
// This module is separate from idemq's core module, so that programs that
// do not use RabbitMQ do not depend on its client.
//
// # Queues
//
// The queue is a durable quorum queue, declared by Sources and Publishers
// when they connect (x-queue-type quorum, nothing else; add limits with a
// policy). Quorum queues replicate every message to a majority of nodes
// before confirming it, and count deliveries, which is where Attempt comes
// from.
//
// A Nack with a delay goes through delay queues, one per bucket of
// [Options.DelayBuckets] actually used, named "<queue>.delay.<bucket>"
// (such as "orders.delay.5s"): quorum queues with a message TTL of the
// bucket that dead-letter, at least once, back to the queue through the
// default exchange. No plugin is needed. Deleting the queue does not
// delete them; [Source.DelayQueues] names them.
//
// RabbitMQ 3.10 can refuse the first publishes to a quorum queue, or the
// declaration itself (INTERNAL_ERROR, cluster_not_formed), when two
// clients declare the new queue at the same moment. The driver reports
// that as an error, and the next call succeeds; declare queues when you
// deploy, or call [Publisher.Setup] or [Source.Setup] once before starting
// the others, to avoid it.
//
// # Leases
//
// AMQP has no lease that expires: a message delivered to a consumer is
// held until it is acknowledged, rejected or its channel closes (a crash,
// a lost connection, [Source.Close]), when the broker delivers it again.
// The channel is the lease. So, by default:
//
//   - Deadline is the zero time (never expires), and the Consumer runtime
//     does not extend anything;
//   - Extend changes nothing and succeeds while the delivery is held and
//     its channel open;
//   - Ack, Nack and Extend fail with [consumer.ErrLeaseLost] once the
//     delivery was settled, or once the channel that delivered it closed:
//     its delivery tag is dead, and the message will be delivered again.
//
// With [Options.Lease], the Source adds a lease of its own: a delivery
// that is neither settled nor extended within Lease of its Fetch or last
// Extend is handed back (basic.nack with requeue) and delivered again with
// Attempt increased, and Deadline reports when that happens. This is what
// the conformance suite's lease checks run against. It protects against a
// caller that stops calling Extend, not against a crash (the broker
// handles that without it).
//
// A channel error closes every delivery of the channel, and one comes
// unasked: RabbitMQ closes the channel of a consumer that has held a
// delivery unacknowledged for longer than consumer_timeout (30 minutes by
// default; rabbitmq.conf, or per queue from 3.12), counting from when the
// broker sent it, which for a message waiting in the prefetch (below) is
// before any Fetch. Extend cannot postpone that. All messages of the channel are then delivered again, and the
// Source reconnects on the next Fetch. Keep handlers well below the
// timeout, or raise it.
//
// # Prefetch
//
// The Source consumes with a prefetch count of [Options.Prefetch]: the
// broker sends it up to that many unacknowledged messages, and those that
// no Fetch has taken yet wait in the Source for the next Fetch. They are
// leased to no caller, but no other consumer gets them while the Source's
// connection lives. Set Prefetch to the Consumer's MaxInFlight, so that
// what waits is what the Consumer is about to ask for. A Fetch whose
// context ends after it took messages leaves them for the next Fetch, as
// they were.
//
// # Attempts
//
// [consumer.Message.Attempt] is the quorum queue's x-delivery-count plus
// one, plus the deliveries made before a Nack with a delay republished the
// message (carried in the x-idemq-attempt header). The broker counts every
// delivery it gets back, so messages that waited in a Source's prefetch
// and come back because the Source closed or lost its connection count one
// delivery more than their handlers saw. On a classic queue, which keeps
// no count, a redelivery is counted as the second attempt.
//
// From RabbitMQ 4.0, quorum queues have a default delivery limit (20):
// the broker drops or dead-letters a message requeued that often, which
// would take the decision away from the dead-letter middleware. Set a
// policy with a delivery-limit above the middleware's limit there.
//
// # Nack with a delay
//
// Nack(ctx, d) with d > 0 publishes a copy of the message (body,
// properties and headers) to the delay queue of the smallest bucket at
// least as long as d, waits for the broker's confirm, and only then
// acknowledges the delivery: a crash in between delivers the message
// twice, never zero times. A delay longer than the largest bucket goes
// round it as often as needed (the due time travels in a header, and is
// compared with the consuming host's clock). The message comes back when
// the bucket's time has passed (RabbitMQ expires messages at the head of
// a queue, and a bucket's messages all wait as long, so none waits behind
// another), at the back of the queue. If the copy cannot be published,
// Nack requeues the delivery for redelivery at once rather than hold it,
// and returns the error. Nack(ctx, 0) is basic.nack with requeue.
//
// # Messages
//
// [consumer.Message.ID] travels as the message-id property, Key in the
// x-idemq-key header, EnqueuedAt in the x-idemq-enqueued-at header (and,
// in whole seconds, as the timestamp property), Headers as string
// headers. Messages are persistent. Header names starting with "x-idemq-"
// are reserved. Message.Headers leaves out the broker's bookkeeping
// (x-delivery-count, x-death, x-first-death-*, x-last-death-*); a header
// that another tool set to a non-string value is rendered with
// fmt.Sprint. A message published without a message-id gets an ID
// derived from its body and headers, stable across redeliveries.
//
// # Publishing
//
// [Publisher.Publish] publishes each message with the mandatory flag and
// waits for the broker's confirms of the whole batch: nil means the
// broker has taken every one of them. A message no queue took (the queue
// was deleted) is confirmed by RabbitMQ but returned, and Publish reports
// [ErrUnroutable]. After an error, some of the batch may have been
// published: publishing it again makes duplicates with the same IDs,
// which the idempotency middleware absorbs. While RabbitMQ blocks
// publishing connections (a memory or disk alarm), Publish waits.
//
// # Connections and failures
//
// A Source holds one connection for consuming and, once a Nack with a
// delay needs it, a second one for publishing, so that a broker that
// blocks publishers does not also stall acknowledgements. A Publisher
// holds one. When a connection is lost, the next Fetch or Publish
// connects again; after a failed attempt, calls within [Options.Reconnect]'s
// backoff fail at once with that attempt's error, so the driver never
// retries on its own and never hammers a broker that is down. The broker
// delivers again every message that was unacknowledged on a lost channel;
// its deliveries report [consumer.ErrLeaseLost], and Fetch reports
// [ErrConnectionLost] once.
//
// Delivery is at least once. An Ack is a frame the broker does not
// answer, so one written just before the connection dies may be lost and
// the message delivered again; a Nack with a delay can deliver a message
// twice as described above; a Publish that failed may have published.
// Make handlers idempotent (package idempotency): then a broker restart,
// a crash or a lost connection has no second effect.
package amqp
