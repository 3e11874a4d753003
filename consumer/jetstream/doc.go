// Package jetstream is a queue driver on NATS JetStream: a [Source] that
// pulls from a durable consumer of a stream, and a [Publisher] that
// publishes to it. Together they keep the [consumer.Source] contract, with
// the one limit described under "Stale holders" below, and they pass
// package consumertest against a real server (tested with nats-server
// 2.9).
//
// It is a module of its own, so that only programs that import it depend
// on the NATS client.
//
//	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
//	src, err := jetstream.New(nc, jetstream.Options{Stream: "ORDERS", Subjects: []string{"orders.>"}, Durable: "billing"})
//	c, err := consumer.New(src, handler, consumer.Config{})
//	err = c.Run(ctx)
//
//	pub, err := jetstream.NewPublisher(nc, jetstream.PublisherOptions{Subject: "orders.placed"})
//	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Body: body})
//
// # Streams and durables
//
// [Source.Setup] (or the first Fetch) creates the stream if it does not
// exist, as a work queue on file storage: a message is removed from the
// stream once acknowledged, and only one durable may consume each
// subject. An existing stream is used as it is; give it Limits or Interest
// retention to let several durables each get every message. Setup then
// creates or updates the durable pull consumer (explicit acks, delivery
// from the start of the stream) with the Options' AckWait, MaxDeliver,
// MaxAckPending and FilterSubject. Every Source of one durable shares its
// messages, as the consumers of a group do, and must be given the same
// Options.
//
// MaxAckPending caps the messages the durable has out at once, across all
// its Sources; the server's default is 1000. Keep it at least the sum of
// the Consumers' MaxInFlight, or they wait on each other.
//
// The driver uses the default JetStream API prefix ($JS.API); JetStream
// domains and imported APIs are not supported.
//
// # Messages
//
// A message's ID travels in the Nats-Msg-Id header, its Key and EnqueuedAt
// in Idemq-Key and Idemq-Enqueued-At, its Headers as NATS headers, and its
// Body as the payload. Header names starting with Nats- or Idemq- are
// reserved. Messages published by other tools are delivered too: their ID
// is "<stream>:<stream sequence>" unless they carry a Nats-Msg-Id, and
// their EnqueuedAt the time the stream stored them.
//
// # Duplicates
//
// The stream drops a message whose Nats-Msg-Id it stored within its
// duplicate window (two minutes unless the stream says otherwise; see
// [Options.DuplicateWindow]), and answers the publish as a success. So a
// Publish retried after an error, or an outbox relay that publishes again
// after a crash, stores each message once. Past the window, or with
// another stream, duplicates get through: delivery is at least once, and
// handlers must be idempotent (package idempotency) in any case.
//
// The window also drops what is sent again on purpose: dlq.Replay
// re-publishes parked messages under their IDs, and a replay within the
// window of the original publish would be dropped, yet counted as
// published by Replay. Give Replay a Publisher with
// [PublisherOptions.NoDedupe], which carries the ID in a header of its own.
//
// # Leases and attempts
//
// A delivery's lease is the durable's ack wait ([Options.AckWait]): if
// JetStream gets no acknowledgement within it, it delivers the message
// again, to this or another Source, with [consumer.Message.Attempt]
// (JetStream's delivery count, NumDelivered) increased. Extend sends
// InProgress, which restarts the ack wait; Ack sends AckSync; Nack sends
// Nak, or NakWithDelay when given a delay, and JetStream delivers the
// message again once the delay has passed. Each is a request, so success
// means that the server processed it.
//
// Deadline is measured from when the pull request (or the Extend) was
// sent, before the server started its ack wait, less [Options.LeaseMargin]
// (AckWait/10, at most 1s): it never falls after the server's. A message
// that a waiting pull request brought some time after it was sent has its
// ack wait restarted (InProgress) on arrival, so that Deadline is not
// mostly gone.
//
// # Stale holders
//
// JetStream does not check who acknowledges. An acknowledgement sent on
// the ack subject of a delivery whose ack wait has lapsed is applied to the
// message as it is now, even when it has been delivered to another
// consumer since: an Ack removes it under the new holder's feet, a Nak
// delivers it to a third consumer while the new holder still works on it,
// and an InProgress extends the new holder's lease. The server answers
// each like any other; nothing tells the stale holder (TestServerAcceptsStaleAcks
// records this of nats-server 2.9).
//
// So the driver keeps the lease itself: Ack, Nack and Extend send nothing
// once Deadline has passed by the local clock, or once the delivery was
// acknowledged or nacked, and fail with an error matching
// [consumer.ErrLeaseLost]. The [consumer.Consumer] runtime extends leases
// long before they end, and gives up a delivery whose Extend fails.
//
// What remains is a race this cannot close: an acknowledgement that
// passed the check but reaches the server only after the ack wait lapsed
// and the message was delivered again, because the process stalled for
// more than LeaseMargin between the check and the send (a long GC pause,
// a frozen VM) or the network held it that long. The stale Ack then
// removes a message another consumer is handling; if that consumer then
// fails, the message is lost. Raise LeaseMargin where such stalls happen.
// The NATS client's reconnect buffer would make this likely, by sending
// what was published while disconnected after it reconnects: the driver
// sends nothing while the connection is down (the operation fails, and the
// runtime tries again), and connections should be made with
// nats.ReconnectBufSize(-1), so that nothing is buffered.
//
// # AckWait and handler time
//
// A handler may run longer than AckWait: the runtime extends the lease
// when half of it has passed. What AckWait bounds is how long a consumer
// may stall (or be cut off from the server) before its messages go to
// another, and so how long a crashed consumer's messages wait. Keep it
// well above the server's round trip and the longest pauses expected, and
// below how long a message may wait after a crash.
//
// # MaxDeliver and the DLQ
//
// After [Options.MaxDeliver] deliveries JetStream stops delivering a
// message: it stays in the stream, unacknowledged, with nothing to tell a
// handler. The dlq middleware parks a message on its delivery numbered
// MaxAttempts, so MaxDeliver must be above dlq's MaxAttempts, or the
// stream gives up before the DLQ has seen the message fail for the last
// time. The default, -1, is unlimited, and is the safe choice: every
// delivery counts towards MaxDeliver, including those the dlq middleware
// does not count (deferrals such as admission limits and duplicates in
// progress), messages handed back by a cancelled Fetch or a consumer
// shutting down, and leases that lapsed.
//
// # Fetch
//
// Fetch first takes the messages available now (a no_wait pull request,
// up to max), and only when there are none waits for one (a pull request
// that expires after [Options.PullExpiry]), then starts again. A cancelled
// Fetch withdraws its request at once, by dropping the interest in its
// reply subject (the server does not deliver to a request nobody listens
// to), and returns ctx's error. JetStream cannot take a delivery back: a
// message the server sent before it saw the withdrawal is nacked, so that
// it is redelivered at once rather than after AckWait, and its Attempt
// increases; one that was on its way at that very moment is redelivered
// when its ack wait lapses. No message is lost either way. The same
// withdrawal ends a request that MaxAckPending holds back (the server
// neither serves nor ends it) once it has brought something, after 50ms
// without more. PullExpiry bounds how long a Fetch takes to notice that
// its request was lost, as when the server restarts, or that the durable
// was deleted.
//
// # When the server fails
//
// The driver reports errors and never retries on its own; the runtime
// retries Fetch with backoff. While the connection is down, Fetch, Ack,
// Nack and Extend fail at once. A message whose Ack failed stays
// unacknowledged and is delivered again once its ack wait lapses, and the
// idempotency middleware skips it; TestBrokerRestart restarts the server
// under load and checks that every message has its effect exactly once.
//
// With file storage, the stream and the durable survive a restart of the
// server. nats-server writes to disk in the background, though: a machine
// that crashes can lose what the server acknowledged last, and after the
// process is killed (SIGKILL), nats-server 2.9 was seen to lose either
// half of an acknowledgement it had processed just before. It may keep in
// a work queue a message the durable counts as acknowledged: it is never
// delivered again and takes space until the stream is purged. Or the
// durable may keep as unacknowledged a message the stream has removed:
// the server tries to deliver it every AckWait (logging "deleted
// message"), and it counts against MaxAckPending until the durable is
// deleted and set up again. No message is lost or delivered as new
// either way.
package jetstream
