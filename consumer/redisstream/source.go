package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
)

// Defaults for zero [Options] fields.
const (
	DefaultPrefix            = "idemq:stream:"
	DefaultGroup             = "idemq"
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultBlock             = 2 * time.Second
)

const (
	// maxFetch bounds the entries one Fetch takes, so that one script
	// call stays short however large a max the caller passes.
	maxFetch = 1000

	// promoteBatch bounds the due delayed messages one Fetch moves back.
	promoteBatch = 100

	// maxSweepInterval bounds the pause between two sweeps of the pending
	// entries list for lapsed leases.
	maxSweepInterval = time.Second
)

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Stream is the stream's name, the user's part of its key (such as
	// "orders"). Required. It must not contain '{' or '}'.
	Stream string

	// Prefix is put in front of every key: the stream is
	// "<Prefix>{<Stream>}:stream" and its delayed set
	// "<Prefix>{<Stream>}:delayed", so both share one hash slot. It must
	// not contain '{' or '}'. Default [DefaultPrefix].
	Prefix string

	// Group is the consumer group. Every Source of one group shares its
	// messages; each group gets every message. Default [DefaultGroup].
	Group string

	// Consumer is this Source's consumer name within the group. It must
	// be unique among the Sources that run at once: the lease of a
	// delivery is tied to it. Default: "<hostname>-<pid>-<random hex>".
	Consumer string

	// VisibilityTimeout is the lease a delivery gets from Fetch and from
	// each Extend: once a delivery has been idle this long, any Source of
	// the group may reclaim it, and it is delivered again with Attempt
	// increased. All Sources of a group should use the same value. At
	// least a millisecond. Default [DefaultVisibilityTimeout].
	VisibilityTimeout time.Duration

	// Block is the longest a single XREADGROUP waits on the server for
	// new entries; Fetch issues as many as it needs until its context is
	// done. It is also the longest a Fetch takes to notice that its
	// context was cancelled (see [Source.Fetch]). Each call waits no
	// longer than a quarter of VisibilityTimeout, than the time left
	// before the context's deadline, or than the time until the next
	// delayed message is due. A waiting Fetch holds one of the client's
	// pooled connections. At least a millisecond. Default [DefaultBlock].
	Block time.Duration

	// MaxLen, when positive, caps the stream at MaxLen entries for the
	// messages this Source puts back after a Nack with a delay: while the
	// stream holds MaxLen entries or more, they wait in the delayed set.
	// Nothing is ever trimmed; see [PublisherOptions.MaxLen]. Default 0,
	// no cap.
	MaxLen int64
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Stream == "":
		return o, errors.New("redisstream: Options.Stream is required")
	case strings.ContainsAny(o.Stream, "{}"):
		return o, fmt.Errorf("redisstream: Options.Stream %q contains a brace; it becomes the key's {hash tag}", o.Stream)
	case strings.ContainsAny(o.Prefix, "{}"):
		return o, fmt.Errorf("redisstream: Options.Prefix %q contains a brace; the stream's {hash tag} follows it", o.Prefix)
	case o.VisibilityTimeout < 0:
		return o, fmt.Errorf("redisstream: negative VisibilityTimeout %s", o.VisibilityTimeout)
	case o.VisibilityTimeout > 0 && o.VisibilityTimeout < time.Millisecond:
		return o, fmt.Errorf("redisstream: VisibilityTimeout %s is below a millisecond", o.VisibilityTimeout)
	case o.Block < 0:
		return o, fmt.Errorf("redisstream: negative Block %s", o.Block)
	case o.Block > 0 && o.Block < time.Millisecond:
		return o, fmt.Errorf("redisstream: Block %s is below a millisecond", o.Block)
	case o.MaxLen < 0:
		return o, fmt.Errorf("redisstream: negative MaxLen %d", o.MaxLen)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Consumer == "" {
		o.Consumer = defaultConsumerName()
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if o.Block == 0 {
		o.Block = DefaultBlock
	}
	return o, nil
}

func defaultConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// streamKey and delayedKey return the keys of stream under prefix.
func streamKey(prefix, stream string) string  { return prefix + "{" + stream + "}:stream" }
func delayedKey(prefix, stream string) string { return prefix + "{" + stream + "}:delayed" }

// Source is the consuming side of a stream: a [consumer.Source] that reads
// as one consumer of a consumer group. It is safe for concurrent use.
type Source struct {
	client   redis.UniversalClient
	stream   string // key
	delayed  string // key
	group    string
	name     string
	vis      time.Duration
	visMS    int64
	block    time.Duration
	maxLen   int64
	sweepGap time.Duration

	ready atomic.Bool // the group is known to exist

	mu        sync.Mutex
	cursor    string    // XAUTOCLAIM cursor; "0-0" when a sweep is complete
	nextSweep time.Time // when to start the next sweep

	acks acker
}

var _ consumer.Source = (*Source)(nil)

// New returns a Source that consumes opts.Stream through client. It
// validates opts and does not contact Redis: the consumer group is created
// by [Source.Setup] or, failing that, by the first Fetch.
func New(client redis.UniversalClient, opts Options) (*Source, error) {
	if client == nil {
		return nil, errors.New("redisstream: client is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Source{
		client:   client,
		stream:   streamKey(o.Prefix, o.Stream),
		delayed:  delayedKey(o.Prefix, o.Stream),
		group:    o.Group,
		name:     o.Consumer,
		vis:      o.VisibilityTimeout,
		visMS:    ceilMillis(o.VisibilityTimeout),
		block:    o.Block,
		maxLen:   o.MaxLen,
		sweepGap: min(max(o.VisibilityTimeout/8, time.Millisecond), maxSweepInterval),
		cursor:   "0-0",
	}
	s.acks.s = s
	return s, nil
}

// StreamKey returns the Redis key of the stream.
func (s *Source) StreamKey() string { return s.stream }

// DelayedKey returns the Redis key of the sorted set that holds messages
// nacked with a delay until they are due.
func (s *Source) DelayedKey() string { return s.delayed }

// Group returns the consumer group's name.
func (s *Source) Group() string { return s.group }

// Consumer returns this Source's consumer name within the group.
func (s *Source) Consumer() string { return s.name }

// Setup creates the stream and the consumer group if they do not exist
// (XGROUP CREATE ... 0 MKSTREAM), so that the group starts with every
// message already in the stream. An existing group is left as it is. Fetch
// calls it when it has not succeeded yet, so calling it is optional; it
// reports a bad connection or a wrong key type early.
func (s *Source) Setup(ctx context.Context) error {
	err := s.client.XGroupCreateMkStream(ctx, s.stream, s.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redisstream: create group %q on %s: %w", s.group, s.stream, err)
	}
	s.ready.Store(true)
	return nil
}

// Fetch implements [consumer.Source]. It returns at most 1000 deliveries
// whatever limit is.
//
// Each round first runs one script that moves due delayed messages back
// into the stream, reclaims entries whose lease lapsed (XAUTOCLAIM with the
// visibility timeout as the minimum idle time) and reads new entries
// (XREADGROUP ... >), without blocking. Only when that finds nothing does
// Fetch block in XREADGROUP, for at most Block, and then starts the next
// round.
//
// Cancellation: a blocking XREADGROUP cannot be called back once sent, so
// Fetch waits for it to return, which takes at most Block, before it
// returns ctx's error. Whatever a read or script took after ctx was done is
// handed back before Fetch returns, as if it had never been delivered: it
// is added again at the stream's tail with its Attempt unchanged. If that
// fails too (Redis is unreachable), the error is joined to ctx's and the
// entries stay pending under this consumer until the visibility timeout
// lapses, when they are redelivered with Attempt increased.
func (s *Source) Fetch(ctx context.Context, limit int) ([]consumer.Delivery, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("redisstream: Fetch max must be positive, got %d", limit)
	}
	n := min(limit, maxFetch)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.ready.Load() {
		if err := s.Setup(ctx); err != nil {
			return nil, err
		}
	}
	// Calls that take entries run without ctx's cancellation or deadline:
	// a reply abandoned half-way would leave entries pending under this
	// consumer. ctx is checked between them instead.
	rctx := context.WithoutCancel(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		before := time.Now()
		entries, wait, err := s.poll(rctx, n, before)
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 {
			return s.deliveries(ctx, entries, before)
		}

		block := min(s.block, s.vis/4)
		if wait >= 0 {
			block = min(block, wait)
		}
		if dl, ok := ctx.Deadline(); ok {
			block = min(block, time.Until(dl))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// BLOCK 0 would wait forever: never ask for less than 1ms.
		block = time.Duration(ceilMillis(max(block, time.Millisecond))) * time.Millisecond
		before = time.Now()
		entries, err = s.read(rctx, n, block)
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 {
			return s.deliveries(ctx, entries, before)
		}
	}
}

// poll runs fetchScript once. wait is how long until the next delayed
// message is due, or -1.
func (s *Source) poll(ctx context.Context, n int, now time.Time) ([]rawEntry, time.Duration, error) {
	cursor := s.sweepCursor(now)
	v, err := fetchScript.Run(ctx, s.client, []string{s.stream, s.delayed},
		s.group, s.name, n, s.visMS, cursor, s.maxLen, promoteBatch).Slice()
	if err != nil {
		return nil, 0, s.fail("fetch", err)
	}
	if len(v) != 3 {
		return nil, 0, fmt.Errorf("redisstream: fetch: unexpected reply %v", v)
	}
	if cursor != "" {
		next, _ := v[0].(string)
		s.sweepDone(next)
	}
	waitMS, _ := v[1].(int64)
	wait := time.Duration(-1)
	if waitMS >= 0 {
		wait = time.Duration(waitMS) * time.Millisecond
	}
	list, _ := v[2].([]any)
	entries := make([]rawEntry, 0, len(list))
	for _, x := range list {
		e, _ := x.([]any)
		if len(e) != 3 {
			return nil, 0, fmt.Errorf("redisstream: fetch: unexpected entry %v", x)
		}
		id, _ := e[0].(string)
		count, _ := e[1].(int64)
		fields, _ := e[2].([]any)
		entries = append(entries, rawEntry{id: id, count: count, fields: fields})
	}
	return entries, wait, nil
}

// sweepCursor returns the XAUTOCLAIM cursor for this round, or "" when no
// sweep for lapsed leases is due. A sweep runs from "0-0" through the whole
// pending entries list, over as many rounds as it takes; the next starts
// sweepGap after it ended.
func (s *Source) sweepCursor(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cursor == "0-0" && now.Before(s.nextSweep) {
		return ""
	}
	return s.cursor
}

func (s *Source) sweepDone(next string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next == "" {
		next = "0-0"
	}
	s.cursor = next
	if next == "0-0" {
		s.nextSweep = time.Now().Add(s.sweepGap)
	}
}

// read blocks in XREADGROUP for up to block. The reply is read as it
// comes, field list and all, as fetchScript's entries are: go-redis's
// typed reply would put the fields in a map first.
func (s *Source) read(ctx context.Context, n int, block time.Duration) ([]rawEntry, error) {
	v, err := s.client.Do(ctx, "XREADGROUP", "GROUP", s.group, s.name, "COUNT", n,
		"BLOCK", block.Milliseconds(), "STREAMS", s.stream, ">").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, s.fail("read", err)
	}
	// One stream's entries: RESP3 answers a map of stream to entries,
	// RESP2 a list of {stream, entries} pairs.
	var lists []any
	switch v := v.(type) {
	case map[any]any:
		for _, list := range v {
			lists = append(lists, list)
		}
	case []any:
		for _, st := range v {
			pair, _ := st.([]any)
			if len(pair) != 2 {
				return nil, fmt.Errorf("redisstream: read: unexpected reply %v", st)
			}
			lists = append(lists, pair[1])
		}
	default:
		return nil, fmt.Errorf("redisstream: read: unexpected reply %v", v)
	}
	var entries []rawEntry
	for _, l := range lists {
		list, _ := l.([]any)
		for _, x := range list {
			e, _ := x.([]any) // {id, fields}
			if len(e) != 2 {
				return nil, fmt.Errorf("redisstream: read: unexpected entry %v", x)
			}
			id, _ := e[0].(string)
			fields, _ := e[1].([]any)
			entries = append(entries, rawEntry{id: id, count: 1, fields: fields})
		}
	}
	return entries, nil
}

// fail wraps a Redis error, and forgets that the group exists when Redis
// says it does not (the stream was deleted), so that the next Fetch creates
// it again.
func (s *Source) fail(op string, err error) error {
	if strings.Contains(err.Error(), "NOGROUP") {
		s.ready.Store(false)
	}
	return fmt.Errorf("redisstream: %s: %w", op, err)
}

// deliveries turns entries taken at before into deliveries, or hands them
// back when ctx ended meanwhile.
func (s *Source) deliveries(ctx context.Context, entries []rawEntry, before time.Time) ([]consumer.Delivery, error) {
	if err := ctx.Err(); err != nil {
		if herr := s.handBack(context.WithoutCancel(ctx), entries); herr != nil {
			return nil, errors.Join(err, herr)
		}
		return nil, err
	}
	deadline := before.Add(s.vis)
	ds := make([]delivery, len(entries))
	out := make([]consumer.Delivery, len(entries))
	for i := range entries {
		e := &entries[i]
		d := &ds[i]
		d.s = s
		d.entry = e.id
		d.count = e.count
		d.msg = decodeMessage(e)
		d.deadline = deadline
		out[i] = d
	}
	return out, nil
}

// handBack puts entries this consumer just took back at the stream's tail,
// with their attempt counts unchanged.
func (s *Source) handBack(ctx context.Context, entries []rawEntry) error {
	args := make([]any, 0, 4+3*len(entries))
	args = append(args, s.group, s.name, s.visMS, 0)
	for _, e := range entries {
		args = append(args, e.id, e.count, "0")
	}
	if err := requeueScript.Run(ctx, s.client, []string{s.stream, s.delayed}, args...).Err(); err != nil {
		return fmt.Errorf("redisstream: hand back %d entries: %w", len(entries), err)
	}
	return nil
}

// ceilMillis converts d to whole milliseconds, rounding up.
func ceilMillis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
