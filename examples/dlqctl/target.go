package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/consumer/redisstream"
)

// Schemes of -to.
const (
	schemeRedisStream = "redis-stream"
	schemePgQueue     = "pgqueue"
)

// target is where replay sends entries, as -to names it:
// redis-stream:<stream>[?prefix=...] or pgqueue:<queue>[?table=...&notify=true].
type target struct {
	raw    string
	scheme string
	name   string // the stream or the queue
	prefix string // redis-stream: key prefix, empty for the driver's default
	table  string // pgqueue: table, empty for the driver's default
	// pgqueue: whether to NOTIFY the queue's channel, as publishers of a
	// queue whose consumers LISTEN do; without it they find the replayed
	// messages at their next poll.
	notify bool
}

// String is -to as the operator wrote it.
func (t target) String() string { return t.raw }

func parseTarget(s string) (target, error) {
	if s == "" {
		return target{}, fmt.Errorf("-to is required: redis-stream:<stream>[?prefix=...] or pgqueue:<queue>[?table=...&notify=true]")
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return target{}, fmt.Errorf("-to %q: want redis-stream:<stream>[?prefix=...] or pgqueue:<queue>[?table=...&notify=true]", s)
	}
	name, rawQuery, _ := strings.Cut(rest, "?")
	if name == "" {
		return target{}, fmt.Errorf("-to %q: no stream or queue name after %q", s, scheme+":")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return target{}, fmt.Errorf("-to %q: %w", s, err)
	}
	t := target{raw: s, scheme: scheme, name: name}
	var allowed []string
	switch scheme {
	case schemeRedisStream:
		allowed = []string{"prefix"}
		t.prefix = q.Get("prefix")
	case schemePgQueue:
		allowed = []string{"table", "notify"}
		t.table = q.Get("table")
		if v := q.Get("notify"); v != "" {
			if t.notify, err = strconv.ParseBool(v); err != nil {
				return target{}, fmt.Errorf("-to %q: notify=%q is not a boolean", s, v)
			}
		}
	default:
		return target{}, fmt.Errorf("-to %q: unknown kind %q, want %s or %s", s, scheme, schemeRedisStream, schemePgQueue)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return target{}, fmt.Errorf("-to %q: unknown option %q for %s (have: %s)", s, k, scheme, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return target{}, fmt.Errorf("-to %q: option %q given %d times", s, k, len(v))
		}
	}
	return t, nil
}

// publisher opens the driver's publisher for t over the shared connections.
func (t target) publisher(ctx context.Context, c *conns) (consumer.Publisher, error) {
	switch t.scheme {
	case schemeRedisStream:
		client, err := c.redisClient()
		if err != nil {
			return nil, err
		}
		return redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: t.name, Prefix: t.prefix})
	case schemePgQueue:
		pool, err := c.postgresPool(ctx)
		if err != nil {
			return nil, err
		}
		return pgqueue.NewPublisher(pool, pgqueue.Options{Table: t.table, Queue: t.name, Notify: t.notify})
	}
	return nil, fmt.Errorf("unknown target kind %q", t.scheme) // parseTarget admits none
}
