package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// Timing of the LISTEN loop.
const (
	// listenCheck is how long the connection may stay silent before the
	// loop pings it: a peer that vanished without closing the socket is
	// only noticed by a write.
	listenCheck = 30 * time.Second

	// Reconnection waits double from listenRetryMin to listenRetryMax,
	// with jitter, while connecting keeps failing.
	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 10 * time.Second

	// closeTimeout bounds closing the connection.
	closeTimeout = 5 * time.Second
)

// listener holds one connection of the pool, hijacked so that the pool
// never hands it to anyone else, LISTENing on the outbox's channel, and
// calls wake for the notifications it receives, at most once per throttle.
// It is pgqueue's LISTEN loop; the two could share it from internal/.
//
// When the connection breaks, the loop logs it and connects again with
// backoff. Nothing waits on it: the Relay polls all along, so a broken
// LISTEN connection makes wake-ups slower, never lost.
type listener struct {
	pool     *pgxpool.Pool
	channel  string
	throttle time.Duration
	log      *slog.Logger
	wake     func()

	cancel context.CancelFunc
	done   chan struct{}
}

func startListener(pool *pgxpool.Pool, channel string, throttle time.Duration, log *slog.Logger, wake func()) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		pool:     pool,
		channel:  channel,
		throttle: throttle,
		log:      log,
		wake:     wake,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go l.run(ctx)
	return l
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	failures := 0
	for {
		listening, err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, puddle.ErrClosedPool) {
			l.log.LogAttrs(ctx, slog.LevelWarn, "outbox: pool closed before the Relay stopped; LISTEN stopped, polling goes on",
				slog.String("channel", l.channel))
			return
		}
		if listening {
			failures = 0
		}
		failures++
		wait := retryDelay(failures)
		l.log.LogAttrs(ctx, slog.LevelWarn, "outbox: LISTEN connection failed; polling meanwhile, reconnecting",
			slog.String("channel", l.channel), slog.Any("error", err), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// retryDelay is the wait after the given number of consecutive failures:
// equal jitter over an exponential ceiling.
func retryDelay(failures int) time.Duration {
	ceil := listenRetryMax
	if failures < 20 {
		ceil = min(listenRetryMax, listenRetryMin<<(failures-1))
	}
	return ceil/2 + rand.N(ceil/2+1)
}

// session connects, listens and relays notifications until the connection
// fails or ctx ends. listening reports whether LISTEN took effect.
func (l *listener) session(ctx context.Context) (listening bool, err error) {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = conn.Close(cctx) // the connection is done with either way
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return false, err
	}
	// Events committed while nobody listened were not announced.
	l.wake()

	var (
		last    time.Time // of the last wake
		pending bool      // a notification came since, inside the throttle
	)
	for {
		deadline := time.Now().Add(listenCheck)
		if pending {
			deadline = last.Add(l.throttle)
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return true, nil
		}
		now := time.Now()
		switch {
		case err == nil && now.Sub(last) >= l.throttle:
			l.wake()
			last, pending = now, false
		case err == nil:
			pending = true
		case pgconn.Timeout(err) && !conn.IsClosed():
			if pending {
				l.wake()
				last, pending = now, false
				continue
			}
			// Silent for listenCheck: make sure the peer is still there.
			if err := conn.Ping(ctx); err != nil {
				return true, err
			}
		default:
			return true, err
		}
	}
}
