package backpressure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/idemq/idemq/consumer"
)

// Guard is a limiter or breaker that the middleware in this package can
// put in front of a handler: [*Admission], [*AIMD], [*RateLimiter] and
// [*Breaker] are Guards.
type Guard interface {
	// enter admits a call or rejects it; exit reports the call's outcome.
	enter(ctx context.Context) (ticket, error)
	exit(t ticket, err error)
	// httpStatus is the status a rejection is answered with over HTTP.
	httpStatus() int
}

// ticket carries what a guard needs between enter and exit.
type ticket struct {
	permit  Permit
	breaker Ticket
}

func (a *Admission) enter(ctx context.Context) (ticket, error) { return ticket{}, a.Acquire(ctx) }
func (a *Admission) exit(ticket, error)                        { a.Release() }
func (a *Admission) httpStatus() int                           { return http.StatusServiceUnavailable }

func (l *AIMD) enter(ctx context.Context) (ticket, error) {
	p, err := l.Acquire(ctx)
	return ticket{permit: p}, err
}
func (l *AIMD) exit(t ticket, err error) { l.Release(t.permit, err) }
func (l *AIMD) httpStatus() int          { return http.StatusServiceUnavailable }

func (l *RateLimiter) enter(ctx context.Context) (ticket, error) { return ticket{}, l.Wait(ctx) }
func (l *RateLimiter) exit(ticket, error)                        {}
func (l *RateLimiter) httpStatus() int                           { return http.StatusTooManyRequests }

func (b *Breaker) enter(context.Context) (ticket, error) {
	t, err := b.Allow()
	return ticket{breaker: t}, err
}
func (b *Breaker) exit(t ticket, err error) { b.Record(t.breaker, err) }
func (b *Breaker) httpStatus() int          { return http.StatusServiceUnavailable }

var (
	_ Guard = (*Breaker)(nil)
	_ Guard = (*Admission)(nil)
	_ Guard = (*AIMD)(nil)
	_ Guard = (*RateLimiter)(nil)
)

// Middleware puts g in front of a consumer handler. A rejected message is
// not failed: it is nacked with a [consumer.RetryAfter] of the rejection's
// hint stretched by up to 50% at random, and the error matches
// [consumer.ErrDeferred] so a dead-letter middleware does not count it. The handler's error is reported to g (an
// adaptive limiter or a breaker learns from it) and returned unchanged.
func Middleware(g Guard) consumer.Middleware {
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			return guarded(ctx, g, next, msg)
		})
	}
}

// KeyedMiddleware puts a breaker per key in front of a consumer handler,
// such as one per partner, chosen by key(msg). An open breaker defers the
// partner's messages while the others flow.
func KeyedMiddleware(bs *Breakers, key func(*consumer.Message) string) consumer.Middleware {
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			return guarded(ctx, bs.Get(key(msg)), next, msg)
		})
	}
}

// guarded runs next behind g, deferring the message when g rejects it.
func guarded(ctx context.Context, g Guard, next consumer.Handler, msg *consumer.Message) error {
	t, err := g.enter(ctx)
	if err != nil {
		return deferred(err)
	}
	err = next.Handle(ctx, msg)
	g.exit(t, err)
	return err
}

// deferred turns a rejection into a redelivery after its hint, stretched
// by up to half at random (never shortened): messages rejected together
// would otherwise all come back together, at the very moment a breaker
// half-opens or a limiter frees up.
func deferred(err error) error {
	if d, ok := RetryAfterHint(err); ok {
		if d > 0 {
			d += time.Duration(rand.Int64N(int64(d)/2 + 1))
		}
		return consumer.RetryAfter(d, err)
	}
	return err // the caller's context ended
}

// HTTPOptions configures [HTTPMiddleware].
type HTTPOptions struct {
	// Status answers a rejection. Default 429 Too Many Requests for a
	// RateLimiter, 503 Service Unavailable for the others.
	Status int
}

// HTTPMiddleware puts g in front of an HTTP handler. A rejected request is
// answered with 429 or 503, a Retry-After header in whole seconds (rounded
// up, at least 1) and a JSON body {"error": "..."}; the handler does not
// run. For an adaptive limiter or a breaker, a response of 500 or above
// counts as a failure and anything else as a success.
func HTTPMiddleware(g Guard, opts HTTPOptions) (func(http.Handler) http.Handler, error) {
	if opts.Status != 0 && (opts.Status < 400 || opts.Status > 599) {
		return nil, errors.New("backpressure: HTTPOptions.Status must be a 4xx or 5xx code")
	}
	status := opts.Status
	if status == 0 {
		status = g.httpStatus()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t, err := g.enter(r.Context())
			if err != nil {
				if d, ok := RetryAfterHint(err); ok {
					w.Header().Set("Retry-After", RetryAfterSeconds(d))
					writeJSONError(w, status, err.Error())
					return
				}
				// The client went away while waiting for a slot.
				writeJSONError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			defer func() {
				var err error
				if sw.status >= 500 {
					err = errServerError
				}
				if v := recover(); v != nil {
					g.exit(t, errServerError)
					panic(v)
				}
				g.exit(t, err)
			}()
			next.ServeHTTP(sw, r)
		})
	}, nil
}

var errServerError = fmt.Errorf("backpressure: handler answered 5xx: %w", ErrOverload)

// RetryAfterSeconds formats d for a Retry-After header: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(s, 1), 10)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// statusWriter records the status the handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
