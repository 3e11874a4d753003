package amqp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// ErrClosed is returned by the methods of a [Source] or [Publisher] that
// was closed.
var ErrClosed = errors.New("amqp: closed")

// ErrConnectionLost is the error, wrapping the broker's reason, of a Fetch
// or Publish whose connection or channel closed under it. The next call
// reconnects.
var ErrConnectionLost = errors.New("amqp: connection lost")

// connTimeout bounds a TCP connect and the AMQP handshake, as the client
// library's own dialer does.
const connTimeout = 30 * time.Second

// session is the state that lives and dies with one connection.
type session interface {
	dead() <-chan struct{}
	// cause is why the session died; it blocks until it has.
	cause() error
	// kill closes the connection, if it is not closed yet, and marks the
	// session dead with err (the first reason given wins).
	kill(err error)
}

// lifeline is the part of a session that reports its death.
type lifeline struct {
	once sync.Once
	done chan struct{}
	err  error // set before done is closed
}

func newLifeline() lifeline { return lifeline{done: make(chan struct{})} }

func (l *lifeline) dead() <-chan struct{} { return l.done }

func (l *lifeline) isDead() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// die marks the session dead with err, and reports whether this call did.
func (l *lifeline) die(err error) bool {
	first := false
	l.once.Do(func() {
		l.err = err
		close(l.done)
		first = true
	})
	return first
}

// cause is why the session died, wrapped in ErrConnectionLost.
func (l *lifeline) cause() error {
	<-l.done
	if errors.Is(l.err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, l.err)
}

// watch kills s when conn or any of chans closes, or a consumer on chans
// is cancelled by the broker (its queue was deleted).
func watch(s session, conn *amqp.Connection, chans ...*amqp.Channel) {
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		select {
		case e := <-connClosed:
			s.kill(closeReason("connection", e))
		case <-s.dead():
		}
	}()
	for _, ch := range chans {
		chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
		cancelled := ch.NotifyCancel(make(chan string, 1))
		go func() {
			select {
			case e := <-chClosed:
				s.kill(closeReason("channel", e))
			case tag, ok := <-cancelled:
				if ok {
					s.kill(fmt.Errorf("the broker cancelled consumer %q (queue deleted?)", tag))
				}
			case <-s.dead():
			}
		}()
	}
}

func closeReason(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

// link holds the current session of a Source or Publisher, and connects a
// new one when the current one has died. It never retries by itself: each
// connection attempt is made for a caller that needs a session, and an
// attempt made within the backoff after a failed one returns that failure
// at once instead.
type link[S session] struct {
	url     string
	cfg     amqp.Config
	backoff consumer.Backoff
	setup   func(*amqp.Connection) (S, error) // builds the session on a fresh connection

	life context.Context // cancelled by close
	stop context.CancelFunc

	mu         sync.Mutex
	cur        S
	has        bool          // cur is set
	connecting chan struct{} // closed when the attempt under way ends
	lastErr    error         // of the last failed attempt
	failures   int           // consecutive failed attempts
	next       time.Time     // no attempt before this after a failure
	closed     bool
}

func newLink[S session](url string, cfg amqp.Config, b consumer.Backoff, name string, setup func(*amqp.Connection) (S, error)) *link[S] {
	props := maps.Clone(cfg.Properties)
	if len(props) == 0 {
		props = amqp.NewConnectionProperties()
	}
	if _, ok := props["connection_name"]; !ok {
		props["connection_name"] = name
	}
	cfg.Properties = props
	l := &link[S]{url: url, cfg: cfg, backoff: b, setup: setup}
	l.life, l.stop = context.WithCancel(context.Background())
	return l
}

// get returns a live session, connecting one if there is none. It waits
// for the connection attempt until ctx is done; an attempt it gave up on
// goes on, and its session serves the next call.
func (l *link[S]) get(ctx context.Context) (S, error) {
	var zero S
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return zero, ErrClosed
	}
	if l.has {
		if sess := l.cur; !isDead(sess) {
			l.mu.Unlock()
			return sess, nil
		}
	}
	if l.connecting == nil {
		if wait := time.Until(l.next); wait > 0 && l.lastErr != nil {
			err := l.lastErr
			l.mu.Unlock()
			return zero, fmt.Errorf("amqp: not connected (next attempt in %s): %w", wait.Round(time.Millisecond), err)
		}
		l.connecting = make(chan struct{})
		go l.connect(l.connecting)
	}
	wait := l.connecting
	l.mu.Unlock()

	select {
	case <-wait:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return zero, ErrClosed
	case l.has && !isDead(l.cur):
		return l.cur, nil
	case l.lastErr != nil:
		return zero, l.lastErr
	default: // connected, and lost already
		return zero, l.cur.cause()
	}
}

func isDead(s session) bool {
	select {
	case <-s.dead():
		return true
	default:
		return false
	}
}

// connect makes one connection attempt and records its outcome.
func (l *link[S]) connect(done chan struct{}) {
	sess, err := l.dial()
	l.mu.Lock()
	defer l.mu.Unlock()
	defer close(done)
	l.connecting = nil
	if err == nil && l.closed {
		sess.kill(ErrClosed)
		return
	}
	if err != nil {
		l.failures++
		l.lastErr = err
		l.next = time.Now().Add(l.backoff.Delay(l.failures))
		return
	}
	l.failures, l.lastErr, l.next = 0, nil, time.Time{}
	if l.has {
		l.cur.kill(ErrClosed)
	}
	l.cur, l.has = sess, true
}

func (l *link[S]) dial() (S, error) {
	var zero S
	if err := l.life.Err(); err != nil {
		return zero, ErrClosed
	}
	cfg := l.cfg
	cfg.Properties = maps.Clone(l.cfg.Properties) // the client library writes to it
	var disarm func() bool
	if cfg.Dial == nil {
		// As the library's dialer, but interrupted by close while the
		// connection is being set up.
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: connTimeout}
			c, err := d.DialContext(l.life, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.SetDeadline(time.Now().Add(connTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			disarm = context.AfterFunc(l.life, func() { c.Close() })
			return c, nil
		}
	}
	conn, err := amqp.DialConfig(l.url, cfg)
	if disarm != nil {
		disarm() // set up: from now on, sessions close it properly
	}
	if err != nil {
		return zero, fmt.Errorf("amqp: connect to %s: %w", redactURL(l.url), err)
	}
	sess, err := l.setup(conn)
	if err != nil {
		conn.Close()
		return zero, err
	}
	return sess, nil
}

// close kills the current session and makes get fail with ErrClosed.
func (l *link[S]) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.stop()
	if l.has {
		l.cur.kill(ErrClosed)
	}
}

// redactURL names the broker of an AMQP URI, without credentials, for
// error messages.
func redactURL(u string) string {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return "the broker"
	}
	return fmt.Sprintf("%s (vhost %q)", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), uri.Vhost)
}
