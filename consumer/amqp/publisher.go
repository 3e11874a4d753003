package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// ErrUnroutable is returned by Publish when the broker returned a message
// as unroutable: no queue took it, because the queue was deleted after the
// Publisher declared it. Which messages of the batch were returned is not
// known; publish them again once the queue exists.
var ErrUnroutable = errors.New("amqp: message returned unroutable")

// closeTimeout bounds how long closing a connection waits for the
// broker's close-ok.
const closeTimeout = 5 * time.Second

// Publisher is the producing side of a queue: a [consumer.Publisher] that
// publishes through the default exchange, with publisher confirms. It
// holds one connection, made on first use and made again after it was
// lost. It is safe for concurrent use.
type Publisher struct {
	queue string
	link  *link[*pubSession]
}

var _ consumer.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher to opts.Queue. It validates opts and
// does not connect: the first Publish, or [Publisher.Setup], does.
func NewPublisher(opts PublisherOptions) (*Publisher, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return newPublisher(o.URL, o.Config, o.Reconnect, o.Queue, "idemq publisher "+o.Queue), nil
}

// newPublisher returns a Publisher whose connections declare queue, or
// declare nothing when queue is "" (the Source's publisher of delayed
// messages, which declares its delay queues as it needs them).
func newPublisher(url string, cfg amqp.Config, b consumer.Backoff, queue, name string) *Publisher {
	p := &Publisher{queue: queue}
	p.link = newLink(url, cfg, b, name, func(conn *amqp.Connection) (*pubSession, error) {
		return newPubSession(conn, queue)
	})
	return p
}

// Queue returns the name of the queue the Publisher publishes to.
func (p *Publisher) Queue() string { return p.queue }

// Setup connects and declares the queue, if that has not been done yet.
// Publish does it when needed, so calling it is optional; it reports a
// bad URL, bad credentials or a queue declared with other arguments early.
func (p *Publisher) Setup(ctx context.Context) error {
	_, err := p.link.get(ctx)
	return err
}

// Publish implements [consumer.Publisher]. Each message is published as a
// persistent message through the default exchange to the queue, with the
// ID as its message-id property, the Key, EnqueuedAt and Headers in its
// headers (and EnqueuedAt, in whole seconds, as its timestamp). Attempt is
// ignored, a zero EnqueuedAt becomes the current time and an empty ID a
// random one; msgs itself is not modified. Header names must not start
// with "x-idemq-", which the driver reserves, nor be the broker's own
// (x-delivery-count, x-death, x-first-death-*, x-last-death-*), which a
// delivery would not give back; header names and the ID are AMQP short
// strings, of at most 255 bytes. A message that breaks these rules fails
// the call before anything is sent.
//
// The messages are published with the mandatory flag, one after the
// other, and Publish then waits for the broker's confirms of them all: it
// returns nil only once the broker has taken responsibility for every one
// of them (written to a majority of the quorum queue's replicas). If it
// returns an error, any of them may or may not have been published: the
// broker refused one (basic.nack), returned one as unroutable
// ([ErrUnroutable]), the connection was lost ([ErrConnectionLost]) or ctx
// ended. Publishing again is safe for consumers that dedupe by ID (package
// idempotency).
//
// ctx bounds the wait for the connection and for the confirms; it does
// not interrupt writing to the socket, which blocks while the broker
// holds publishers back under a memory or disk alarm.
func (p *Publisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	pubs := make([]amqp.Publishing, len(msgs))
	for i := range msgs {
		var err error
		if pubs[i], err = encode(&msgs[i], now); err != nil {
			return err
		}
	}
	sess, err := p.link.get(ctx)
	if err != nil {
		return err
	}
	return sess.publish(ctx, p.queue, pubs)
}

// Close closes the connection. Publishes waiting for confirms return an
// error matching [ErrClosed]; later calls fail with it.
func (p *Publisher) Close() error {
	p.link.close()
	return nil
}

// pubSession is a connection with one channel in confirm mode.
type pubSession struct {
	lifeline
	conn *amqp.Connection
	ch   *amqp.Channel

	mu      sync.Mutex
	pending map[uint64]*confirmBatch // by publish sequence number
	early   map[uint64]bool          // confirms that came before their sequence number was registered
	returns uint64                   // messages returned unroutable so far

	declMu   sync.Mutex      // one declaration at a time: see declareDelay
	declared map[string]bool // delay queues declared on this connection; guarded by declMu
}

// confirmBatch collects the confirms of one Publish call.
type confirmBatch struct {
	left     int    // confirms still to come
	nacked   int    // basic.nack from the broker
	returns0 uint64 // pubSession.returns when the batch began
	err      error
	done     chan struct{} // closed when left reaches 0
}

func newPubSession(conn *amqp.Connection, queue string) (*pubSession, error) {
	if queue != "" {
		if err := declare(conn, queue, mainQueueArgs()); err != nil {
			return nil, err
		}
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("amqp: enable publisher confirms: %w", err)
	}
	s := &pubSession{
		lifeline: newLifeline(),
		conn:     conn,
		ch:       ch,
		pending:  make(map[uint64]*confirmBatch),
		early:    make(map[uint64]bool),
		declared: make(map[string]bool),
	}
	// Unbuffered: the client library hands over a message's return before
	// its confirm, and one goroutine takes both, so a batch's returns are
	// counted before its last confirm settles it.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation))
	returns := ch.NotifyReturn(make(chan amqp.Return))
	watch(s, conn, ch)
	go s.settle(confirms, returns)
	return s, nil
}

func (s *pubSession) kill(err error) {
	if s.die(err) {
		_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
	}
}

// settle matches confirms and returns to batches until the channel closes.
func (s *pubSession) settle(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return) {
	for {
		select {
		case _, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.mu.Lock()
			s.returns++
			s.mu.Unlock()
		case c, ok := <-confirms:
			if !ok {
				s.kill(errors.New("confirm channel closed"))
				return
			}
			s.mu.Lock()
			if b, ok := s.pending[c.DeliveryTag]; ok {
				delete(s.pending, c.DeliveryTag)
				s.confirmLocked(b, c.Ack)
			} else {
				s.early[c.DeliveryTag] = c.Ack
			}
			s.mu.Unlock()
		case <-s.dead():
			return
		}
	}
}

func (s *pubSession) confirmLocked(b *confirmBatch, ack bool) {
	if !ack {
		b.nacked++
	}
	b.left--
	if b.left > 0 {
		return
	}
	switch {
	case b.nacked > 0:
		b.err = fmt.Errorf("amqp: the broker refused %d message(s) (basic.nack)", b.nacked)
	case s.returns > b.returns0:
		b.err = ErrUnroutable
	}
	close(b.done)
}

// register records that the message published as seq belongs to b.
func (s *pubSession) register(seq uint64, b *confirmBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ack, ok := s.early[seq]; ok {
		delete(s.early, seq)
		s.confirmLocked(b, ack)
		return
	}
	s.pending[seq] = b
}

// publish publishes pubs to queue through the default exchange and waits
// for their confirms.
func (s *pubSession) publish(ctx context.Context, queue string, pubs []amqp.Publishing) error {
	b := &confirmBatch{left: len(pubs), done: make(chan struct{})}
	s.mu.Lock()
	b.returns0 = s.returns
	s.mu.Unlock()
	for i := range pubs {
		dc, err := s.ch.PublishWithDeferredConfirm("", queue, true, false, pubs[i])
		if err != nil {
			if errors.Is(err, amqp.ErrClosed) {
				s.kill(err)
				return s.cause()
			}
			return fmt.Errorf("amqp: publish to %q: %w", queue, err)
		}
		if dc == nil { // only on a channel not in confirm mode
			return fmt.Errorf("amqp: publish to %q: channel not in confirm mode", queue)
		}
		s.register(dc.DeliveryTag, b)
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.dead():
		select {
		case <-b.done:
			return b.err
		default:
			return s.cause()
		}
	}
}

// declareDelay declares a delay queue once per connection. Declarations
// take turns: RabbitMQ 3.10 may fail one of two concurrent declarations of
// a new quorum queue.
func (s *pubSession) declareDelay(ctx context.Context, name string, args amqp.Table) error {
	// Declaring a quorum queue takes a round of consensus; the caller may
	// stop waiting, and the declaration goes on.
	res := make(chan error, 1)
	go func() {
		s.declMu.Lock()
		defer s.declMu.Unlock()
		if s.declared[name] {
			res <- nil
			return
		}
		err := declare(s.conn, name, args)
		if err == nil {
			s.declared[name] = true
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// declare declares a durable queue on a channel of its own, which a
// refused declaration (other arguments) closes without harming the others.
func declare(conn *amqp.Connection, name string, args amqp.Table) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", err)
	}
	_, err = ch.QueueDeclare(name, true, false, false, false, args)
	if err != nil {
		return fmt.Errorf("amqp: declare queue %q: %w", name, err)
	}
	_ = ch.Close()
	return nil
}
