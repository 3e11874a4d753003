package stockredis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/internal/units"
	"github.com/idemq/idemq/stock"
)

// DefaultPrefix is the key prefix used when [Options.Prefix] is empty.
const DefaultPrefix = "idemq:stock:"

// receiptTTL is how long Restock and LoadCodes remember a call, so that
// go-redis's retry of a call whose reply was lost finds the first run's
// result. It outlasts go-redis's own retries with its default timeouts by
// far: 4 attempts of 3s reads and writes.
const receiptTTL = time.Minute

// codesPerScript is how many codes one LoadCodes script takes, so that a
// large load does not stall every other client of Redis for its whole
// length.
const codesPerScript = 1000

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Prefix is put in front of every Redis key the store writes. It must
	// not contain '{' or '}': the hash tag that follows it decides each
	// key's slot. Default [DefaultPrefix].
	Prefix string

	// Retain is how long, past the end of its hold, a reservation ID
	// stays bound to its item (the pointer key that Get, Confirm and
	// Release look it up by) unless it is confirmed, which binds it for
	// good. The ID of a refused Reserve is bound as long, so that a storm
	// of refused requests leaves no keys behind for good. Once the
	// binding has lapsed, Get, Confirm and Release answer
	// [stock.ErrNotFound]; a Reserve retried with the ID binds it again
	// and, in the same item, still finds the reservation it made, but the
	// ID is free to be reserved in another item. Default [DefaultRetain].
	Retain time.Duration
}

// DefaultRetain is [Options.Retain] when it is zero.
const DefaultRetain = 24 * time.Hour

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	switch {
	case o.Retain < 0:
		return o, fmt.Errorf("stockredis: negative Options.Retain %v", o.Retain)
	case o.Retain == 0:
		o.Retain = DefaultRetain
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return o, fmt.Errorf("stockredis: Options.Prefix %q contains a brace; the store places its own {hash tag} after it", o.Prefix)
	}
	return o, nil
}

// Store is a [stock.Store] in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
	items  string // the set of item names
	retain time.Duration

	mu     sync.Mutex
	queues map[string]*reserveQueue // by item: Reserves waiting to be sent
}

var _ stock.Store = (*Store)(nil)

// New returns a store that keeps its items in client under opts.Prefix.
// It does not contact Redis.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("stockredis: client is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{client: client, prefix: o.Prefix, items: o.Prefix + "items", retain: o.Retain,
		queues: map[string]*reserveQueue{}}, nil
}

// tagEscaper makes any name a hash tag: no brace, so the tag ends where
// the store closes it, and '%' escaped too, so that two names never share
// a tag.
var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// itemKeys names the keys of one item (see scripts.go for the layout).
type itemKeys struct {
	base, item, resv, holds, holders, free, all string
}

func (s *Store) keys(item string) itemKeys {
	base := s.prefix + "{" + tagEscaper.Replace(item) + "}:"
	return itemKeys{
		base:    base,
		item:    base + "i",
		resv:    base + "r",
		holds:   base + "h",
		holders: base + "u",
		free:    base + "c",
		all:     base + "a",
	}
}

func (k itemKeys) receipt(nonce string) string { return k.base + "n:" + nonce }

// scriptKeys are the keys of every script that changes the item's units
// (luaItem's), and extra after them.
func (k itemKeys) scriptKeys(extra ...string) []string {
	return append([]string{k.item, k.resv, k.holds, k.holders}, extra...)
}

// pointerKey is the key that records which item reservation id belongs
// to. It is in a slot of its own, apart from every item.
func (s *Store) pointerKey(id string) string {
	return s.prefix + "{res:" + tagEscaper.Replace(id) + "}"
}

// Define implements [stock.Store]. The item's name is first added to the
// set of items that Sweep walks, then the item is created or updated in
// one script.
func (s *Store) Define(ctx context.Context, item string, cfg stock.ItemConfig) error {
	if err := stock.CheckName("item name", item); err != nil {
		return err
	}
	if cfg.HolderLimit < 0 {
		return fmt.Errorf("stockredis: negative HolderLimit %d", cfg.HolderLimit)
	}
	// Before the item, so that no item exists that Sweep cannot find; a
	// name whose Define failed afterwards is skipped by Sweep.
	if err := s.client.SAdd(ctx, s.items, item).Err(); err != nil {
		return fmt.Errorf("stockredis: define %q: %w", item, err)
	}
	codes := "0"
	if cfg.Codes {
		codes = "1"
	}
	k := s.keys(item)
	n, err := defineScript.Run(ctx, s.client, []string{k.item, k.resv, k.holders}, cfg.HolderLimit, codes).Int64()
	if err != nil {
		return fmt.Errorf("stockredis: define %q: %w", item, err)
	}
	if n == stWrongKind {
		return fmt.Errorf("stockredis: item %q cannot change between counted units and codes", item)
	}
	return nil
}

// Restock implements [stock.Store]. units must be positive.
func (s *Store) Restock(ctx context.Context, item string, units int) error {
	if units <= 0 {
		return fmt.Errorf("stockredis: Restock units must be positive, got %d", units)
	}
	if item == "" {
		return unknownItem(item)
	}
	k := s.keys(item)
	n, err := restockScript.Run(ctx, s.client, []string{k.item, k.receipt(nonce())},
		units, receiptTTL.Milliseconds(), maxUnits).Int64()
	if err != nil {
		return fmt.Errorf("stockredis: restock %q: %w", item, err)
	}
	switch n {
	case 0:
		return nil
	case stUnknownItem:
		return unknownItem(item)
	case stWrongKind:
		return fmt.Errorf("stockredis: item %q is a code pool: load codes instead", item)
	case stTooMany:
		return fmt.Errorf("stockredis: restock %q with %d units: an item can have had at most 2^53-1 units in all", item, units)
	}
	return fmt.Errorf("stockredis: restock %q: unexpected reply %d", item, n)
}

// LoadCodes implements [stock.Store]. Empty codes are ignored. Codes are
// loaded up to 1000 per script, each batch atomic; if a call fails part
// way, the batches before the failure stay loaded, and calling again with
// the same codes loads the rest.
func (s *Store) LoadCodes(ctx context.Context, item string, codes []string) (int, error) {
	if err := stock.CheckCodes(codes); err != nil {
		return 0, err
	}
	if item == "" {
		return 0, unknownItem(item)
	}
	k := s.keys(item)
	added := 0
	for start := 0; start == 0 || start < len(codes); start += codesPerScript {
		batch := codes[start:min(start+codesPerScript, len(codes))]
		args := make([]any, 0, 1+len(batch))
		args = append(args, receiptTTL.Milliseconds())
		for _, c := range batch {
			args = append(args, c)
		}
		v, err := loadCodesScript.Run(ctx, s.client, []string{k.item, k.free, k.all, k.receipt(nonce())}, args...).Slice()
		if err != nil {
			return added, fmt.Errorf("stockredis: load codes %q: %w", item, err)
		}
		st, n := int64At(v, 0), int64At(v, 1)
		switch {
		case st == stUnknownItem:
			return added, unknownItem(item)
		case st == stWrongKind:
			return added, fmt.Errorf("stockredis: item %q counts units: restock it instead", item)
		case st != stOK || len(v) != 2:
			return added, fmt.Errorf("stockredis: load codes %q: unexpected reply %v", item, v)
		}
		added += int(n)
	}
	return added, nil
}

// Group commit of an item's Reserves: one round trip carries up to
// maxReserveBatch of them, and up to maxPipelines round trips of an item
// are in flight at once, the second only once secondPipelineAt Reserves
// wait. Redis runs one item's scripts one after another, but a second
// pipeline lets it work on one batch while the client reads the replies
// of the other and writes the next, instead of waiting for each in turn.
const (
	maxReserveBatch  = 128
	maxPipelines     = 2
	secondPipelineAt = 8
)

// Reserve implements [stock.Store].
//
// Concurrent Reserves of one item are sent together (see the package
// documentation): a Reserve joins its item's queue, and the queue is
// sent in one round trip, up to maxReserveBatch Reserves at once, with at
// most maxPipelines round trips per item in flight; Reserves that arrive
// meanwhile wait for the next. So an item reserved alone costs one round trip a call,
// and a hot one amortizes it over as many calls as are waiting. The round
// trip is one pipeline of the command that binds each ID to req.Item (SET
// NX GET of the ID's pointer, see the package documentation) and one
// script in the item's slot that makes the reservations in order, each as
// if it ran alone.
//
// If the pointer names another item, the script's reservation, if it made
// one, is undone in a second round trip, identified by a nonce of this
// call, and Reserve fails with [stock.ErrConflict]. An ID once bound stays
// bound to its item while the binding lasts, even if the reservation was
// refused. A Reserve that is given a held reservation under an ID that
// was bound before it (by a refused call, or a concurrent one) makes sure
// in a second round trip that the binding lasts until the hold ends and
// Retain more.
//
// If ctx ends before the call is sent, nothing is done; if it ends after,
// Reserve returns ctx's error at once and the reservation may still be
// made (retry with the same ID to find out); the undo or the longer
// binding that its answer asks for is still done when the answer comes.
func (s *Store) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	req, err := req.Validate()
	if err != nil {
		return stock.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: %w", req.ID, err)
	}
	c := &reserveCall{ctx: ctx, req: req, nonce: nonce(), done: make(chan reserveResult, 1)}
	s.enqueueReserve(c)
	select {
	case r := <-c.done:
		return s.answerReserve(ctx, c, r)
	case <-ctx.Done():
		s.mu.Lock()
		taken := c.taken
		if !taken {
			c.abandoned = true
		}
		s.mu.Unlock()
		if taken {
			// The call is in flight: what its answer asks for (an undo,
			// a longer binding) is still done when it comes.
			go func() {
				r := <-c.done
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
				defer cancel()
				_, _ = s.answerReserve(ctx, c, r)
			}()
		}
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: %w", req.ID, ctx.Err())
	}
}

// answerReserve turns the result of c's round trip into Reserve's answer,
// with what it takes: the undo of a reservation made under an ID bound to
// another item, or a longer binding for one whose ID was bound before.
func (s *Store) answerReserve(ctx context.Context, c *reserveCall, r reserveResult) (stock.Reservation, error) {
	req := c.req
	switch {
	case errors.Is(r.boundErr, redis.Nil):
	case r.boundErr != nil:
		// The script may have made a reservation that no pointer leads
		// to yet; a retry with the same ID binds it and returns it, and
		// without one it expires.
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: %w", req.ID, r.boundErr)
	case r.other != req.Item:
		return stock.Reservation{}, s.undoReserve(ctx, req, c.nonce, r.reply, r.err)
	}
	if r.err != nil {
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: %w", req.ID, r.err)
	}
	v := r.reply
	switch st := int64At(v, 0); st {
	case stOK:
		res, err := reserved(req, v)
		if err == nil && r.boundErr == nil && res.State == stock.Held {
			// The ID was bound before, by a call that may have asked for
			// a shorter hold (one that was refused, or a concurrent one
			// in another pipeline): the binding must outlast this hold.
			return s.keepBound(ctx, req, c.nonce, v, res)
		}
		return res, err
	case stConflict:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrConflict, req.ID)
	case stUnknownItem:
		return stock.Reservation{}, unknownItem(req.Item)
	case stDisabled, stHolderLimit, stSoldOut:
		if len(v) != 3 {
			break
		}
		reason, _ := v[2].(string)
		return stock.Reservation{}, &stock.ReservationError{
			Item:      req.Item,
			Available: int(int64At(v, 1)),
			Err:       refusals[st],
			Reason:    reason,
		}
	}
	return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: unexpected reply %v", req.ID, v)
}

// reserveCall is one Reserve waiting in its item's queue.
type reserveCall struct {
	ctx   context.Context
	req   stock.ReserveRequest
	nonce string
	done  chan reserveResult // buffered: the sender never waits for the caller

	// Guarded by Store.mu.
	taken     bool // sent: its outcome is Redis's
	abandoned bool // its caller gave up before it was taken
}

// reserveResult is what one call's round trip returned: the pointer's
// old value (boundErr redis.Nil if it was new), and the script's reply
// for the call.
type reserveResult struct {
	other    string
	boundErr error
	reply    []any
	err      error
}

// reserveQueue holds the Reserves of one item not yet sent. It exists,
// with one or two goroutines sending it (senders, at most maxPipelines),
// while the item has Reserves under way.
type reserveQueue struct {
	pending []*reserveCall
	senders int
}

// enqueueReserve adds c to its item's queue, and starts a sender for the
// queue if it has none, or if it has one and secondPipelineAt calls
// wait.
func (s *Store) enqueueReserve(c *reserveCall) {
	s.mu.Lock()
	q := s.queues[c.req.Item]
	if q == nil {
		q = &reserveQueue{}
		s.queues[c.req.Item] = q
	}
	q.pending = append(q.pending, c)
	if q.senders == 0 || (q.senders < maxPipelines && len(q.pending) >= secondPipelineAt) {
		q.senders++
		go s.sendReserves(c.req.Item, q)
	}
	s.mu.Unlock()
}

// sendReserves sends q's calls, a batch per round trip, until none is
// left; the last sender to stop removes q.
func (s *Store) sendReserves(item string, q *reserveQueue) {
	k := s.keys(item)
	var batch []*reserveCall
	for {
		batch = s.takeReserves(item, q, batch[:0])
		if len(batch) == 0 {
			return
		}
		s.reserveBatch(k, item, batch)
		clear(batch)
	}
}

// takeReserves moves up to maxReserveBatch live calls from q to batch: a
// call whose context is done is dropped, even before its caller notices,
// so that it makes nothing. When there are none, the calling sender stops,
// and the last one removes q from the store.
func (s *Store) takeReserves(item string, q *reserveQueue, batch []*reserveCall) []*reserveCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(q.pending) && len(batch) < maxReserveBatch {
		c := q.pending[n]
		n++
		if c.abandoned || c.ctx.Err() != nil {
			continue
		}
		c.taken = true
		batch = append(batch, c)
	}
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	if len(batch) == 0 {
		q.senders--
		if q.senders == 0 {
			delete(s.queues, item)
		}
	}
	return batch
}

// reserveBatch sends one batch of an item's Reserves in one pipeline: the
// pointer of each call's ID, then reserveBatchScript for all of them, and
// gives each call its results.
func (s *Store) reserveBatch(k itemKeys, item string, batch []*reserveCall) {
	// The first caller's context values (tracing) go with the round trip,
	// not its cancellation: the others are waiting on the same one.
	ctx := context.WithoutCancel(batch[0].ctx)
	keys := k.scriptKeys()
	args := make([]any, 0, 1+5*len(batch))
	args = append(args, sweepBatch)
	pipe := s.client.Pipeline()
	bound := make([]*redis.StatusCmd, len(batch))
	for i, c := range batch {
		bound[i] = pipe.SetArgs(ctx, s.pointerKey(c.req.ID), item,
			redis.SetArgs{Mode: "NX", Get: true, TTL: s.bindTTL(c.req.Hold)})
		args = append(args, c.req.ID, c.req.Holder, c.req.Quantity, millis(c.req.Hold), c.nonce)
	}
	res := reserveBatchScript.EvalSha(ctx, pipe, keys, args...)
	_, _ = pipe.Exec(ctx) // each command's error is read below

	if redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		// The script cache was flushed (a restart, SCRIPT FLUSH): the
		// script did not run. EVAL runs and caches it.
		res = reserveBatchScript.Eval(ctx, s.client, keys, args...)
	}
	flat, err := res.Slice()
	var replies [][]any
	if err == nil {
		replies, err = splitReplies(flat, len(batch))
	}
	for i, c := range batch {
		r := reserveResult{err: err}
		r.other, r.boundErr = bound[i].Result()
		if err == nil {
			r.reply = replies[i]
		}
		c.done <- r
	}
}

// splitReplies cuts the flat reply of reserveBatchScript into the n
// replies it holds, each preceded by its length.
func splitReplies(flat []any, n int) ([][]any, error) {
	replies := make([][]any, 0, n)
	for i := 0; i < len(flat); {
		size, ok := flat[i].(int64)
		if !ok || size < 1 || size > int64(len(flat)-i-1) {
			return nil, fmt.Errorf("malformed reply %v", flat)
		}
		replies = append(replies, flat[i+1:i+1+int(size):i+1+int(size)])
		i += 1 + int(size)
	}
	if len(replies) != n {
		return nil, fmt.Errorf("%d replies to %d reservations", len(replies), n)
	}
	return replies, nil
}

// reserved reads the reservation in a reply of reserveBatchScript: {stOK, exp}
// for one it made for req, or a reservation it found.
func reserved(req stock.ReserveRequest, v []any) (stock.Reservation, error) {
	if len(v) != 2 {
		return parseReservation(req.ID, req.Item, v)
	}
	s, _ := v[1].(string)
	exp, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: bad expiry in reply %v", req.ID, v)
	}
	return stock.Reservation{
		ID:        req.ID,
		Item:      req.Item,
		Holder:    req.Holder,
		Quantity:  req.Quantity,
		State:     stock.Held,
		ExpiresAt: time.UnixMilli(exp),
	}, nil
}

var refusals = map[int64]error{
	stDisabled:    stock.ErrDisabled,
	stHolderLimit: stock.ErrHolderLimit,
	stSoldOut:     stock.ErrSoldOut,
}

// keepBound makes sure that req.ID stays bound to req.Item for as long as
// a binding made for the held reservation res would: until its hold ends,
// and Retain more. If the ID turns out to be bound to another item (its
// binding lapsed, and another item took it), res is undone as for any
// conflict.
func (s *Store) keepBound(ctx context.Context, req stock.ReserveRequest, nonce string, v []any, res stock.Reservation) (stock.Reservation, error) {
	ttl := s.bindTTL(max(req.Hold, time.Until(res.ExpiresAt)))
	n, err := bindScript.Run(ctx, s.client, []string{s.pointerKey(req.ID)}, req.Item, millis(ttl)).Int64()
	switch {
	case err != nil:
		return stock.Reservation{}, fmt.Errorf("stockredis: reserve %q: held, but lengthening its ID's binding failed (reserve it again): %w",
			req.ID, err)
	case n == 0:
		return stock.Reservation{}, s.undoReserve(ctx, req, nonce, v, nil)
	}
	return res, nil
}

// bindTTL is how long an ID's binding lasts for a hold of d: d and
// Retain, or as long as a time.Duration goes if that is longer.
func (s *Store) bindTTL(d time.Duration) time.Duration {
	if d > math.MaxInt64-s.retain {
		return math.MaxInt64
	}
	return d + s.retain
}

// undoTimeout bounds an undo, which runs even if the caller's context has
// ended: a hold left behind would take its units until it expires.
const undoTimeout = 10 * time.Second

// undoReserve is Reserve's answer when req.ID is bound to another item:
// the reservation script ran in req.Item all the same (its reply v, or
// its error err), so whatever it made is undone, found by the call's
// nonce, and the answer is ErrConflict. Unless the script answered that
// it made nothing (a refusal, or the ID already used in req.Item) or did
// not run (NOSCRIPT), it may have made a reservation, and the undo runs.
// If the undo fails, that reservation cannot be reached (every way to it
// goes through the pointer), and it expires with its hold.
func (s *Store) undoReserve(ctx context.Context, req stock.ReserveRequest, nonce string, v []any, err error) error {
	conflict := fmt.Errorf("%w: %q (it belongs to another item)", stock.ErrConflict, req.ID)
	if (err == nil && int64At(v, 0) != stOK) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		return conflict
	}
	k := s.keys(req.Item)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := undoReserveScript.Run(ctx, s.client, k.scriptKeys(), req.ID, nonce).Err(); err != nil {
		return fmt.Errorf("%w; undoing the hold this call may have made in %q failed, so it is held until it expires: %w",
			conflict, req.Item, err)
	}
	return conflict
}

// lookup returns the item reservation id belongs to.
func (s *Store) lookup(ctx context.Context, op, id string) (string, error) {
	item, err := s.client.Get(ctx, s.pointerKey(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", fmt.Errorf("%w: %q", stock.ErrNotFound, id)
	case err != nil:
		return "", fmt.Errorf("stockredis: %s %q: %w", op, id, err)
	}
	return item, nil
}

// Confirm implements [stock.Store]. It takes three round trips: one to
// find the reservation's item, one script in the item's slot, and, for a
// reservation it confirmed, one that binds the ID for good.
func (s *Store) Confirm(ctx context.Context, id string) (stock.Reservation, error) {
	item, err := s.lookup(ctx, "confirm", id)
	if err != nil {
		return stock.Reservation{}, err
	}
	k := s.keys(item)
	v, err := confirmScript.Run(ctx, s.client, k.scriptKeys(k.free), id).Slice()
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockredis: confirm %q: %w", id, err)
	}
	switch int64At(v, 0) {
	case stOK:
		// The ID of a confirmed reservation, and only of one, stays bound
		// for good, so that it stays reachable. If that fails, Confirm
		// fails, and a retry (which finds the reservation confirmed)
		// keeps it; until then the binding lasts as Reserve made it.
		n, err := bindScript.Run(ctx, s.client, []string{s.pointerKey(id)}, item, 0).Int64()
		switch {
		case err != nil:
			return stock.Reservation{}, fmt.Errorf("stockredis: confirm %q: confirmed, but keeping its ID bound failed (confirm it again): %w", id, err)
		case n == 0:
			return stock.Reservation{}, fmt.Errorf("stockredis: confirm %q: confirmed in %q, but its binding lapsed and the ID is now bound to another item", id, item)
		}
		return parseReservation(id, item, v)
	case stNotFound:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrNotFound, id)
	case stExpired:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrExpired, id)
	case stReleased:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrReleased, id)
	case stNoCodes:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrNoCodes, item)
	}
	return stock.Reservation{}, fmt.Errorf("stockredis: confirm %q: unexpected reply %v", id, v)
}

// Release implements [stock.Store]. It takes two round trips, like
// Confirm.
func (s *Store) Release(ctx context.Context, id string) error {
	item, err := s.lookup(ctx, "release", id)
	if err != nil {
		return err
	}
	k := s.keys(item)
	n, err := releaseScript.Run(ctx, s.client, k.scriptKeys(), id).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("stockredis: release %q: %w", id, err)
	case n == 0:
		return nil
	case n == stNotFound:
		return fmt.Errorf("%w: %q", stock.ErrNotFound, id)
	case n == stConfirmed:
		return fmt.Errorf("%w: %q", stock.ErrConfirmed, id)
	}
	return fmt.Errorf("stockredis: release %q: unexpected reply %d", id, n)
}

// Get implements [stock.Store]. It changes nothing: a hold whose time has
// passed is reported expired, and its units go back at the next script
// that touches its item.
func (s *Store) Get(ctx context.Context, id string) (stock.Reservation, error) {
	item, err := s.lookup(ctx, "get", id)
	if err != nil {
		return stock.Reservation{}, err
	}
	v, err := getScript.Run(ctx, s.client, []string{s.keys(item).resv}, id).Slice()
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockredis: get %q: %w", id, err)
	}
	switch int64At(v, 0) {
	case stOK:
		return parseReservation(id, item, v)
	case stNotFound:
		return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrNotFound, id)
	}
	return stock.Reservation{}, fmt.Errorf("stockredis: get %q: unexpected reply %v", id, v)
}

// Disable implements [stock.Store].
func (s *Store) Disable(ctx context.Context, item, reason string) error {
	return s.setDisabled(ctx, "disable", item, "1", reason)
}

// Enable implements [stock.Store].
func (s *Store) Enable(ctx context.Context, item string) error {
	return s.setDisabled(ctx, "enable", item, "0", "")
}

func (s *Store) setDisabled(ctx context.Context, op, item, flag, reason string) error {
	if item == "" {
		return unknownItem(item)
	}
	n, err := disableScript.Run(ctx, s.client, []string{s.keys(item).item}, flag, reason).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("stockredis: %s %q: %w", op, item, err)
	case n == 0:
		return nil
	case n == stUnknownItem:
		return unknownItem(item)
	}
	return fmt.Errorf("stockredis: %s %q: unexpected reply %d", op, item, n)
}

// Level implements [stock.Store]. It first expires every hold of the item
// whose time has passed, so the level is exact as of the server's clock.
func (s *Store) Level(ctx context.Context, item string) (stock.Level, error) {
	if item == "" {
		return stock.Level{}, unknownItem(item)
	}
	k := s.keys(item)
	v, err := levelScript.Run(ctx, s.client, k.scriptKeys()).Slice()
	if err != nil {
		return stock.Level{}, fmt.Errorf("stockredis: level %q: %w", item, err)
	}
	switch st := int64At(v, 0); {
	case st == stUnknownItem:
		return stock.Level{}, unknownItem(item)
	case st != stOK || len(v) != 6:
		return stock.Level{}, fmt.Errorf("stockredis: level %q: unexpected reply %v", item, v)
	}
	disabled, _ := v[4].(string)
	reason, _ := v[5].(string)
	return stock.Level{
		Item:      item,
		Available: int(int64At(v, 1)),
		Held:      int(int64At(v, 2)),
		Confirmed: int(int64At(v, 3)),
		Disabled:  disabled == "1",
		Reason:    reason,
	}, nil
}

// Sweep implements [stock.Store]. limit must be positive.
//
// It walks the set of item names and runs one script per item until it
// has expired limit holds, so a Sweep costs one round trip per item it
// visits, whether or not the item has anything to expire. The walk is not
// a snapshot: an item defined meanwhile may or may not be visited.
func (s *Store) Sweep(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("stockredis: Sweep limit must be positive, got %d", limit)
	}
	n := 0
	var cursor uint64
	for {
		names, next, err := s.client.SScan(ctx, s.items, cursor, "", 100).Result()
		if err != nil {
			return n, fmt.Errorf("stockredis: sweep: %w", err)
		}
		for _, item := range names {
			k := s.keys(item)
			m, err := sweepScript.Run(ctx, s.client, k.scriptKeys(), limit-n).Int()
			if err != nil {
				return n, fmt.Errorf("stockredis: sweep %q: %w", item, err)
			}
			n += m
			if n >= limit {
				return n, nil
			}
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

func unknownItem(item string) error {
	return fmt.Errorf("%w: %q", stock.ErrUnknownItem, item)
}

// parseReservation reads a script's reservation reply:
// {1, holder, qty, state, exp, codes}.
func parseReservation(id, item string, v []any) (stock.Reservation, error) {
	bad := func(what string) (stock.Reservation, error) {
		return stock.Reservation{}, fmt.Errorf("stockredis: reservation %q: bad %s in reply %v", id, what, v)
	}
	if len(v) != 6 {
		return bad("length")
	}
	holder, ok1 := v[1].(string)
	qtyS, ok2 := v[2].(string)
	state, ok3 := v[3].(string)
	expS, ok4 := v[4].(string)
	codesS, ok5 := v[5].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return bad("types")
	}
	qty, err := strconv.Atoi(qtyS)
	if err != nil {
		return bad("quantity")
	}
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil {
		return bad("expiry")
	}
	r := stock.Reservation{
		ID:        id,
		Item:      item,
		Holder:    holder,
		Quantity:  qty,
		State:     stock.State(state),
		ExpiresAt: time.UnixMilli(exp),
	}
	if codesS != "" {
		if r.Codes, err = decodeCodes(codesS); err != nil {
			return bad("codes")
		}
	}
	return r, nil
}

// decodeCodes splits codes stored as "<length>:<bytes>" one after another.
func decodeCodes(s string) ([]string, error) {
	var out []string
	for s != "" {
		n, rest, ok := strings.Cut(s, ":")
		size, err := strconv.Atoi(n)
		// The scripts write lengths as plain decimals: no sign and no
		// leading zero, so that a list has one spelling.
		if !ok || err != nil || n[0] < '0' || n[0] > '9' || (n[0] == '0' && len(n) > 1) || size > len(rest) {
			return nil, errors.New("malformed code list")
		}
		out = append(out, rest[:size])
		s = rest[size:]
	}
	return out, nil
}

// int64At returns v[i] if it is an integer, else 0.
func int64At(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	n, _ := v[i].(int64)
	return n
}

// millis converts a positive d to whole milliseconds, rounding up so that
// no hold becomes zero.
func millis(d time.Duration) int64 { return units.Ceil(d, time.Millisecond) }

// nonce returns a value unique to one call, naming its receipt.
func nonce() string { return rand.Text() }
