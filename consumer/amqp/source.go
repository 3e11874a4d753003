package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// redelayRetry is how long a message on its way round a long delay waits
// before it is handed back to the queue when it could not be sent round
// again, so that a broker in trouble is not asked again at once.
const redelayRetry = time.Second

// Source is the consuming side of a quorum queue: a [consumer.Source] that
// holds one connection with one consumer (manual acknowledgements,
// prefetch [Options.Prefetch]), made on first use and made again after it
// was lost, and a second connection, made on the first Nack with a delay,
// to publish delayed messages. It is safe for concurrent use.
type Source struct {
	o     Options
	link  *link[*srcSession]
	delay *Publisher // publishes to the delay queues
	log   *slog.Logger

	life    context.Context // cancelled by Close
	stop    context.CancelFunc
	workers sync.WaitGroup // redelays under way

	mu    sync.Mutex
	stash []stashed // taken from the consumer by Fetches that were cancelled
}

var _ consumer.Source = (*Source)(nil)

// stashed is a delivery that a cancelled Fetch took from the consumer and
// left for the next one.
type stashed struct {
	sess *srcSession
	d    amqp.Delivery
}

// New returns a Source that consumes opts.Queue. It validates opts and does
// not connect: the first Fetch, or [Source.Setup], does.
func New(opts Options) (*Source, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Source{
		o:     o,
		delay: newPublisher(o.URL, o.Config, o.Reconnect, "", "idemq delays "+o.Queue),
		log:   o.Logger,
	}
	s.life, s.stop = context.WithCancel(context.Background())
	s.link = newLink(o.URL, o.Config, o.Reconnect, "idemq source "+o.Queue, s.newSession)
	return s, nil
}

// Queue returns the name of the queue the Source consumes.
func (s *Source) Queue() string { return s.o.Queue }

// DelayQueues returns the names of the delay queues the Source may use,
// one per bucket, smallest first. Only those a Nack has used exist.
func (s *Source) DelayQueues() []string {
	names := make([]string, len(s.o.DelayBuckets))
	for i, b := range s.o.DelayBuckets {
		names[i] = delayQueueName(s.o.Queue, b)
	}
	return names
}

// Setup connects, declares the queue and starts consuming, if that has not
// been done yet. Fetch does it when needed, so calling it is optional; it
// reports a bad URL, bad credentials or a queue declared with other
// arguments early. From then on the broker sends the Source up to Prefetch
// messages, which wait in it for Fetch.
func (s *Source) Setup(ctx context.Context) error {
	_, err := s.link.get(ctx)
	return err
}

// Close closes the connections. Deliveries not yet settled report
// [consumer.ErrLeaseLost] from then on, and the broker delivers their
// messages again, as it does those the Source had received but not yet
// handed out: all of them with Attempt increased, since the broker counts
// them as delivered. Close waits for messages it was sending round a long
// delay to be sent or handed back.
func (s *Source) Close() error {
	s.link.close()
	s.stop()
	s.workers.Wait()
	return s.delay.Close()
}

// srcSession is a connection with one consuming channel.
type srcSession struct {
	lifeline
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
}

func (s *Source) newSession(conn *amqp.Connection) (*srcSession, error) {
	if err := declare(conn, s.o.Queue, mainQueueArgs()); err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", err)
	}
	if err := ch.Qos(s.o.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("amqp: set prefetch %d: %w", s.o.Prefetch, err)
	}
	ds, err := ch.Consume(s.o.Queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("amqp: consume %q: %w", s.o.Queue, err)
	}
	sess := &srcSession{lifeline: newLifeline(), conn: conn, ch: ch, deliveries: ds}
	watch(sess, conn, ch)
	return sess, nil
}

// kill closes the connection, so that the broker requeues every message it
// had sent on it and not had acknowledged.
func (s *srcSession) kill(err error) {
	if s.die(err) {
		_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
	}
}

// Fetch implements [consumer.Source]. It returns the messages the broker
// has sent the Source, up to limit, waiting for the first one until ctx is
// done. The broker sends at most Prefetch unacknowledged messages, so a
// Fetch never returns more than Prefetch minus the deliveries still held.
//
// Fetch connects when the Source has no connection; when the last attempt
// failed less than the Reconnect backoff ago, it returns that attempt's
// error at once instead. When the connection is lost while Fetch waits, it
// returns an error matching [ErrConnectionLost], and the next Fetch
// connects again. A Fetch whose ctx ends after it took messages from the
// consumer leaves them, as they were, for the next Fetch.
func (s *Source) Fetch(ctx context.Context, limit int) ([]consumer.Delivery, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("amqp: Fetch max must be positive, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sess, err := s.link.get(ctx)
	if err != nil {
		return nil, err
	}
	raws := s.unstash(sess, limit)
	for len(raws) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sess.dead():
			return nil, sess.cause()
		case d, ok := <-sess.deliveries:
			if !ok {
				sess.kill(errors.New("consumer channel closed"))
				return nil, sess.cause()
			}
			if !s.detour(sess, &d) {
				raws = append(raws, d)
			}
		}
	}
more:
	for len(raws) < limit {
		select {
		case d, ok := <-sess.deliveries:
			if !ok {
				break more
			}
			if !s.detour(sess, &d) {
				raws = append(raws, d)
			}
		default:
			break more
		}
	}
	if err := ctx.Err(); err != nil {
		s.restash(sess, raws)
		return nil, err
	}
	now := time.Now()
	out := make([]consumer.Delivery, len(raws))
	for i := range raws {
		out[i] = s.newDelivery(sess, &raws[i], now)
	}
	return out, nil
}

// unstash takes up to limit stashed deliveries of sess, and drops those of
// dead sessions (the broker delivers them again).
func (s *Source) unstash(sess *srcSession, limit int) []amqp.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stash) == 0 {
		return nil
	}
	var out []amqp.Delivery
	keep := s.stash[:0]
	for _, st := range s.stash {
		switch {
		case st.sess != sess || isDead(st.sess):
		case len(out) < limit:
			out = append(out, st.d)
		default:
			keep = append(keep, st)
		}
	}
	clear(s.stash[len(keep):])
	s.stash = keep
	return out
}

func (s *Source) restash(sess *srcSession, raws []amqp.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range raws {
		s.stash = append(s.stash, stashed{sess: sess, d: d})
	}
}

// bucket returns the delay queue bucket for delay, and when the message is
// due if delay is longer than the largest bucket (zero otherwise).
func (s *Source) bucket(delay time.Duration, now time.Time) (time.Duration, time.Time) {
	bs := s.o.DelayBuckets
	for _, b := range bs {
		if b >= delay {
			return b, time.Time{}
		}
	}
	return bs[len(bs)-1], now.Add(delay)
}

// publishDelayed publishes p to the delay queue of bucket, declaring it
// first if this connection has not, and waits for the confirm.
func (s *Source) publishDelayed(ctx context.Context, bucket time.Duration, p amqp.Publishing) error {
	sess, err := s.delay.link.get(ctx)
	if err != nil {
		return err
	}
	name := delayQueueName(s.o.Queue, bucket)
	if err := sess.declareDelay(ctx, name, delayQueueArgs(s.o.Queue, bucket)); err != nil {
		return err
	}
	return sess.publish(ctx, name, []amqp.Publishing{p})
}

// detour reports whether d is on its way round a delay longer than the
// largest bucket and not due yet; if so, it sends d round again instead of
// handing it out.
func (s *Source) detour(sess *srcSession, d *amqp.Delivery) bool {
	ms, ok := headerInt(d.Headers, headerDue)
	if !ok {
		return false
	}
	due := time.UnixMilli(ms)
	now := time.Now()
	if !now.Before(due) {
		return false
	}
	dd := *d
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.redelay(sess, &dd, due, now)
	}()
	return true
}

// redelay publishes d to the delay queue for what is left of its delay and
// acknowledges it, or hands it back to the queue when that fails.
func (s *Source) redelay(sess *srcSession, d *amqp.Delivery, due, now time.Time) {
	bucket, next := s.bucket(due.Sub(now), now)
	if !next.IsZero() {
		next = due // still longer than the largest bucket
	}
	prior, _ := headerInt(d.Headers, headerAttempt)
	ctx, cancel := context.WithTimeout(s.life, connTimeout)
	err := s.publishDelayed(ctx, bucket, republish(d, int(prior), next))
	cancel()
	if err == nil {
		err = sess.ch.Ack(d.DeliveryTag, false)
		if err != nil {
			s.log.LogAttrs(s.life, slog.LevelWarn, "amqp: acknowledging a message sent round its delay failed; it will be delivered again",
				slog.String("message_id", d.MessageId), slog.Any("error", err))
		}
		return
	}
	s.log.LogAttrs(s.life, slog.LevelWarn, "amqp: sending a message round its delay failed; handing it back",
		slog.String("message_id", d.MessageId), slog.Time("due", due), slog.Any("error", err))
	select {
	case <-time.After(redelayRetry):
	case <-s.life.Done():
		return // the connection closes, and the broker requeues it
	case <-sess.dead():
		return
	}
	_ = sess.ch.Nack(d.DeliveryTag, false, true)
}
