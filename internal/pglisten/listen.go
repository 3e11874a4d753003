// Package pglisten holds the LISTEN loop the PostgreSQL backends that wake
// on NOTIFY share: one connection, hijacked from a pool, that LISTENs on a
// channel and turns the notifications into throttled wake-up calls.
//
// It gives wake-ups that come sooner, never a guarantee that one comes:
// when the connection breaks, the loop logs it and connects again with
// backoff, and notifications sent meanwhile are lost. The backends poll all
// along, so a broken LISTEN connection makes wake-ups slower, never lost
// work; after each (re)connection the loop calls wake once, for what was
// announced while nobody listened.
package pglisten

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/idemq/idemq/consumer"
)

// Timing of the LISTEN loop.
const (
	// checkInterval is how long the connection may stay silent before the
	// loop pings it: a peer that vanished without closing the socket is
	// only noticed by a write.
	checkInterval = 30 * time.Second

	// Reconnection waits double from RetryMin to RetryMax, with jitter,
	// while connecting keeps failing.
	RetryMin = 100 * time.Millisecond
	RetryMax = 10 * time.Second

	// closeTimeout bounds closing the connection.
	closeTimeout = 5 * time.Second
)

// Config says what a [Listener] listens to and whom it tells.
type Config struct {
	// Channel is the channel to LISTEN on, unquoted.
	Channel string

	// Throttle is the least time between two calls of Wake for
	// notifications: those that arrive sooner are folded into one call at
	// the end of the interval.
	Throttle time.Duration

	// Logger receives the broken connections the loop carries on after.
	Logger *slog.Logger

	// Name starts the logged messages ("pgqueue", "outbox"), and Owner
	// names what the loop serves ("Source", "Relay") in the message logged
	// when the pool is closed under it.
	Name, Owner string

	// Wake is called from the loop's goroutine; it must not block.
	Wake func()
}

// Listener holds one connection of a pool, hijacked so that the pool never
// hands it to anyone else, LISTENing on a channel, and calls Wake for the
// notifications it receives, at most once per Throttle.
type Listener struct {
	pool *pgxpool.Pool
	cfg  Config

	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts a Listener on pool; [Listener.Stop] ends it.
func Start(pool *pgxpool.Pool, cfg Config) *Listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{
		pool:   pool,
		cfg:    cfg,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go l.run(ctx)
	return l
}

// Stop ends the loop, closes its connection and returns once both are
// done. It may be called once.
func (l *Listener) Stop() {
	l.cancel()
	<-l.done
}

func (l *Listener) run(ctx context.Context) {
	defer close(l.done)
	failures := 0
	for {
		listening, err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, puddle.ErrClosedPool) {
			l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn,
				l.cfg.Name+": pool closed before the "+l.cfg.Owner+" stopped; LISTEN stopped, polling goes on",
				slog.String("channel", l.cfg.Channel))
			return
		}
		if listening {
			failures = 0
		}
		failures++
		wait := RetryDelay(failures)
		l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, l.cfg.Name+": LISTEN connection failed; polling meanwhile, reconnecting",
			slog.String("channel", l.cfg.Channel), slog.Any("error", err), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// RetryDelay is the wait after the given number of consecutive failures,
// from 1: equal jitter over an exponential ceiling from [RetryMin] to
// [RetryMax].
func RetryDelay(failures int) time.Duration {
	return consumer.Backoff{Initial: RetryMin, Max: RetryMax, Jitter: consumer.EqualJitter}.Delay(failures)
}

// session connects, listens and relays notifications until the connection
// fails or ctx ends. listening reports whether LISTEN took effect.
func (l *Listener) session(ctx context.Context) (listening bool, err error) {
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
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cfg.Channel}.Sanitize()); err != nil {
		return false, err
	}
	// What was announced while nobody listened was not heard.
	l.cfg.Wake()

	var (
		last    time.Time // of the last wake
		pending bool      // a notification came since, inside the throttle
	)
	for {
		deadline := time.Now().Add(checkInterval)
		if pending {
			deadline = last.Add(l.cfg.Throttle)
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return true, nil
		}
		now := time.Now()
		switch {
		case err == nil && now.Sub(last) >= l.cfg.Throttle:
			l.cfg.Wake()
			last, pending = now, false
		case err == nil:
			pending = true
		case pgconn.Timeout(err) && !conn.IsClosed():
			if pending {
				l.cfg.Wake()
				last, pending = now, false
				continue
			}
			// Silent for checkInterval: make sure the peer is still there.
			if err := conn.Ping(ctx); err != nil {
				return true, err
			}
		default:
			return true, err
		}
	}
}
