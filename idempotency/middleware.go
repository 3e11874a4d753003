package idempotency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
)

// MetricDuplicatesSkipped counts deliveries acked without running the
// handler because their key was already completed.
const MetricDuplicatesSkipped = "duplicates_skipped"

// Options configures [Middleware]. Zero fields take the documented
// defaults.
type Options struct {
	// Store keeps the keys. Required.
	Store Store

	// Key derives the dedupe key. Default [KeyFromID].
	Key KeyFunc

	// Namespace is put in front of every key ("namespace:key"), so that
	// consumers with different effects can share a store. Default none.
	Namespace string

	// Fingerprint derives the payload digest checked against the one
	// stored with the key. Default [FingerprintBody]; [NoFingerprint]
	// turns the check off.
	Fingerprint FingerprintFunc

	// MaxKeyLen rejects longer keys (namespace included) as permanent
	// failures. Default 256 bytes.
	MaxKeyLen int

	// Lease is how long a claim lasts without extension; it is extended
	// every Lease/3 while the handler runs, so it only bounds how long a
	// crashed consumer blocks the key. Default 30s.
	Lease time.Duration

	// Retention is how long a completed key is remembered. A duplicate
	// that arrives later runs again, so Retention must outlive the
	// broker's redelivery horizon and any replay from a dead-letter queue.
	// Default 7 days.
	Retention time.Duration

	// InProgressDelay is the redelivery delay asked for a message whose
	// key another consumer is working on, or the holder's remaining lease
	// when that is shorter. The holder usually finishes well before its
	// lease runs out, so this is how soon the duplicate looks again.
	// Default 1s.
	InProgressDelay time.Duration

	// Observer counts duplicates skipped. Default none.
	Observer consumer.Observer

	// Logger receives failures to release or extend a claim. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Store == nil {
		return o, errors.New("idempotency: Options.Store is required")
	}
	switch {
	case o.MaxKeyLen < 0:
		return o, fmt.Errorf("idempotency: negative MaxKeyLen %d", o.MaxKeyLen)
	case o.Lease < 0, o.Retention < 0, o.InProgressDelay < 0:
		return o, errors.New("idempotency: negative duration in Options")
	}
	if o.Key == nil {
		o.Key = KeyFromID
	}
	if o.Fingerprint == nil {
		o.Fingerprint = FingerprintBody
	}
	if o.MaxKeyLen == 0 {
		o.MaxKeyLen = 256
	}
	if o.Lease == 0 {
		o.Lease = 30 * time.Second
	}
	if o.Retention == 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Retention < o.Lease {
		return o, fmt.Errorf("idempotency: Retention %s is shorter than Lease %s", o.Retention, o.Lease)
	}
	if o.InProgressDelay == 0 {
		o.InProgressDelay = time.Second
	}
	if o.Observer == nil {
		o.Observer = consumer.NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Middleware runs each message's handler at most once to success per key:
//
//   - the key is claimed atomically in the store before the handler runs;
//   - a key completed before is a duplicate: it is acked without running
//     the handler and counted as [MetricDuplicatesSkipped];
//   - a key claimed by another consumer is not run twice at once: the
//     message is nacked with a [consumer.RetryAfter] of InProgressDelay
//     (at most the holder's remaining lease);
//   - the claim's lease is extended while the handler runs; if it is lost,
//     the handler's context is cancelled with cause [ErrStaleToken];
//   - when the handler fails (or panics) the claim is released so that the
//     redelivery runs: a key is never marked before success;
//   - when it succeeds the key is completed, with the result set by
//     [SetResult], for Retention;
//   - the same key with a different payload fingerprint, a key that cannot
//     be derived and an oversized key are permanent failures, for a
//     dead-letter middleware to park.
//
// What it cannot promise: the handler's effect and the completion are two
// writes. If the process dies between them, the claim lapses after its
// lease and the message runs again. Where that window matters, keep the
// effect and the key in one transaction (idempotencypg.Inbox) or make the
// effect itself idempotent, using the fencing token from [TokenFromContext].
func Middleware(opts Options) (consumer.Middleware, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return func(next consumer.Handler) consumer.Handler {
		return &handler{o: o, next: next}
	}, nil
}

type handler struct {
	o    Options
	next consumer.Handler
}

// claimState is what a running handler can reach through its context.
type claimState struct {
	token  int64
	result []byte
}

type claimCtxKey struct{}

// SetResult stores result with the message's key when the handler
// succeeds, for the HTTP middleware's replays or a caller that reads it
// back. It reports false when ctx does not come from [Middleware].
func SetResult(ctx context.Context, result []byte) bool {
	c, ok := ctx.Value(claimCtxKey{}).(*claimState)
	if ok {
		c.result = result
	}
	return ok
}

// TokenFromContext returns the fencing token of the claim the handler runs
// under. Pass it to downstream writes that can refuse stale tokens.
func TokenFromContext(ctx context.Context) (int64, bool) {
	c, ok := ctx.Value(claimCtxKey{}).(*claimState)
	if !ok {
		return 0, false
	}
	return c.token, true
}

func (h *handler) key(msg *consumer.Message) (string, error) {
	k, err := h.o.Key(msg)
	if err != nil {
		return "", err
	}
	if k == "" {
		return "", fmt.Errorf("idempotency: empty key for message %q", msg.ID)
	}
	if h.o.Namespace != "" {
		k = h.o.Namespace + ":" + k
	}
	if len(k) > h.o.MaxKeyLen {
		return "", fmt.Errorf("%w: %d bytes for message %q, limit %d", ErrKeyTooLong, len(k), msg.ID, h.o.MaxKeyLen)
	}
	return k, nil
}

func (h *handler) Handle(ctx context.Context, msg *consumer.Message) (err error) {
	key, err := h.key(msg)
	if err != nil {
		return consumer.Permanent(err)
	}
	claim, err := h.o.Store.Claim(ctx, key, h.o.Fingerprint(msg), h.o.Lease)
	if err != nil {
		if errors.Is(err, ErrFingerprintMismatch) {
			return consumer.Permanent(fmt.Errorf("message %q, key %q: %w", msg.ID, key, err))
		}
		return fmt.Errorf("idempotency: claim %q: %w", key, err)
	}
	switch claim.Status {
	case Completed:
		h.o.Observer.Count(MetricDuplicatesSkipped, 1)
		return nil
	case InProgress:
		return consumer.RetryAfter(max(min(claim.RetryAfter, h.o.InProgressDelay), time.Millisecond),
			fmt.Errorf("message %q, key %q: %w", msg.ID, key, ErrInProgress))
	case Claimed:
	default:
		return fmt.Errorf("idempotency: claim %q: unknown status %v", key, claim.Status)
	}

	state := &claimState{token: claim.Token}
	hctx, cancel := context.WithCancelCause(context.WithValue(ctx, claimCtxKey{}, state))
	defer cancel(nil)
	ka := h.keepAlive(hctx, cancel, key, claim.Token)
	// Settlement must happen even when ctx was cancelled (a lost consumer
	// lease, a timeout): a claim left behind would block redeliveries until
	// its lease runs out.
	sctx := context.WithoutCancel(ctx)

	finished := false
	defer func() {
		if !finished { // the handler panicked
			ka.stop()
			h.release(sctx, key, claim.Token)
		}
	}()
	err = h.next.Handle(hctx, msg)
	finished = true
	ka.stop()

	if err != nil {
		h.release(sctx, key, claim.Token)
		return err
	}
	if cerr := h.o.Store.Complete(sctx, key, claim.Token, state.result, h.o.Retention); cerr != nil {
		return fmt.Errorf("idempotency: complete %q: %w", key, cerr)
	}
	return nil
}

func (h *handler) release(ctx context.Context, key string, token int64) {
	err := h.o.Store.Release(ctx, key, token)
	if err != nil && !errors.Is(err, ErrStaleToken) {
		h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: release failed; the key stays claimed until its lease runs out",
			slog.String("key", key), slog.Any("error", err))
	}
}

// keeper extends a claim's lease every Lease/3 until stopped.
type keeper struct {
	h      *handler
	ctx    context.Context
	cancel context.CancelCauseFunc
	key    string
	token  int64

	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
}

func (h *handler) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, key string, token int64) *keeper {
	k := &keeper{h: h, ctx: ctx, cancel: cancel, key: key, token: token}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer = time.AfterFunc(h.o.Lease/3, k.extend)
	return k
}

func (k *keeper) extend() {
	err := k.h.o.Store.Extend(k.ctx, k.key, k.token, k.h.o.Lease)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped || k.ctx.Err() != nil {
		return
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrStaleToken):
		k.h.o.Logger.LogAttrs(k.ctx, slog.LevelWarn, "idempotency: claim lost; cancelling the handler",
			slog.String("key", k.key))
		k.cancel(fmt.Errorf("idempotency: claim on %q lost: %w", k.key, ErrStaleToken))
		return
	default:
		k.h.o.Logger.LogAttrs(k.ctx, slog.LevelWarn, "idempotency: extending claim failed; retrying",
			slog.String("key", k.key), slog.Any("error", err))
	}
	k.timer.Reset(k.h.o.Lease / 3)
}

func (k *keeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
}
