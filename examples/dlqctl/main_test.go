package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/dlq/dlqredis"
	"github.com/idemq/idemq/internal/testenv"
)

// backend is a dead-letter store seeded for a test, with the connection
// flags that make dlqctl open the same store.
type backend struct {
	store dlq.Store
	conn  []string
}

// cli runs dlqctl with the backend's connection flags before args.
func (b backend) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLI(t, append(slices.Clone(b.conn), args...)...)
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// ok runs dlqctl and requires it to succeed.
func (b backend) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := b.cli(t, args...)
	require.Equal(t, exitOK, code, "dlqctl %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
	require.Empty(t, errOut)
	return out
}

// postgresURL is the test server's URL with schema as the search_path, so
// that dlqctl's own pool sees the test's tables.
func postgresURL(t *testing.T, schema string) string {
	t.Helper()
	u, err := url.Parse(testenv.PostgresURL())
	require.NoError(t, err)
	require.Contains(t, []string{"postgres", "postgresql"}, u.Scheme, "these tests need %s as a URL", testenv.EnvPostgresURL)
	q := u.Query()
	q.Set("options", "-csearch_path="+schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func newPostgres(t *testing.T) backend {
	t.Helper()
	pool, schema := testenv.PostgresWithSchema(t)
	require.NoError(t, dlqpg.Migrate(context.Background(), pool, dlqpg.Options{}))
	s, err := dlqpg.New(pool, dlqpg.Options{})
	require.NoError(t, err)
	return backend{store: s, conn: []string{"-store", "postgres", "-postgres-url", postgresURL(t, schema)}}
}

func newRedis(t *testing.T) backend {
	t.Helper()
	client, prefix := testenv.Redis(t)
	s, err := dlqredis.New(client, dlqredis.Options{Prefix: prefix, Name: "dlqctl"})
	require.NoError(t, err)
	return backend{store: s, conn: []string{"-store", "redis", "-redis-addr", testenv.RedisAddr(), "-redis-prefix", prefix, "-name", "dlqctl"}}
}

var backends = map[string]func(t *testing.T) backend{
	"postgres": newPostgres,
	"redis":    newRedis,
}

// seeded are the entries seed parks, oldest failure first, by their
// message IDs.
var seeded = []struct {
	msgID  string
	source string
	reason dlq.Reason
	ago    time.Duration
	body   []byte
}{
	{"order-1", "orders", dlq.ReasonPermanent, 5 * time.Hour, []byte(`{"order":1}`)},
	{"order-2", "orders", dlq.ReasonAttemptsExhausted, 4 * time.Hour, []byte(`{"order":2}`)},
	{"pay-1", "payments", dlq.ReasonPermanent, 3 * time.Hour, []byte(`{"payment":1}`)},
	{"order-3", "orders", dlq.ReasonPermanent, 2 * time.Hour, []byte("line one\nline two")},
	{"pay-2", "payments", dlq.ReasonUndecodable, time.Hour, []byte{0xff, 0x00, 0x01, 'x'}},
}

// seed parks the seeded entries and returns them in the same order.
func seed(t *testing.T, s dlq.Store) []dlq.Entry {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	var out []dlq.Entry
	for _, sd := range seeded {
		e := dlq.Entry{
			ID: dlq.EntryID(sd.source, sd.msgID),
			Message: consumer.Message{
				ID:         sd.msgID,
				Key:        "key-" + sd.msgID,
				Body:       sd.body,
				Headers:    map[string]string{"content-type": "application/json", "trace-id": "trace-" + sd.msgID},
				Attempt:    3,
				EnqueuedAt: now.Add(-sd.ago - time.Hour),
			},
			Source:        sd.source,
			Reason:        sd.reason,
			Error:         "handle " + sd.msgID + ": charge: card declined\ndetails on a second line",
			ErrorChain:    []string{"handle " + sd.msgID + ": charge: card declined", "charge: card declined", "card declined"},
			Attempts:      3,
			FirstFailedAt: now.Add(-sd.ago - time.Minute),
			LastFailedAt:  now.Add(-sd.ago),
		}
		require.NoError(t, s.Put(context.Background(), e))
		out = append(out, e)
	}
	return out
}

// ids returns the entry IDs of entries, or of those whose message IDs
// are given.
func ids(entries []dlq.Entry, msgIDs ...string) []string {
	var out []string
	for _, e := range entries {
		if len(msgIDs) == 0 || slices.Contains(msgIDs, e.Message.ID) {
			out = append(out, e.ID)
		}
	}
	return out
}

// tableIDs returns the ID column of list's table, and the next cursor.
func tableIDs(t *testing.T, out string) (got []string, next string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	require.True(t, strings.HasPrefix(lines[0], "ID "), "table header in:\n%s", out)
	for _, l := range lines[1:] {
		if c, ok := strings.CutPrefix(l, "next: "); ok {
			next = c
			continue
		}
		got = append(got, strings.Fields(l)[0])
	}
	return got, next
}

// storeIDs lists every entry left in s.
func storeIDs(t *testing.T, s dlq.Store) []string {
	t.Helper()
	page, err := s.List(context.Background(), dlq.Filter{}, "", 1000)
	require.NoError(t, err)
	return ids(page.Entries)
}

func TestListCountShow(t *testing.T) {
	t.Parallel()
	for name, newBackend := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			entries := seed(t, b.store)

			t.Run("list", func(t *testing.T) {
				out := b.ok(t, "list")
				got, next := tableIDs(t, out)
				require.Equal(t, ids(entries), got)
				require.Empty(t, next)
				require.Contains(t, out, "SOURCE")
				require.Contains(t, out, "handle order-1: charge: card declined …") // first line only
				require.NotContains(t, out, "details on a second line")
				require.Contains(t, out, entries[0].LastFailedAt.Format(time.RFC3339))
			})

			filters := []struct {
				name string
				args []string
				want []string
			}{
				{"reason", []string{"-reason", "permanent"}, ids(entries, "order-1", "pay-1", "order-3")},
				{"source", []string{"-source", "payments"}, ids(entries, "pay-1", "pay-2")},
				{"reason and source", []string{"-reason", "permanent", "-source", "orders"}, ids(entries, "order-1", "order-3")},
				{"since duration", []string{"-since", "150m"}, ids(entries, "order-3", "pay-2")},
				{"until duration", []string{"-until", "150m"}, ids(entries, "order-1", "order-2", "pay-1")},
				{"since and until RFC 3339", []string{
					"-since", entries[1].LastFailedAt.Format(time.RFC3339),
					"-until", entries[3].LastFailedAt.Format(time.RFC3339),
				}, ids(entries, "order-2", "pay-1")},
				{"since days", []string{"-since", "1d"}, ids(entries)},
				{"none", []string{"-reason", "fingerprint_mismatch"}, nil},
			}
			for _, f := range filters {
				t.Run("list filtered by "+f.name, func(t *testing.T) {
					out := b.ok(t, append([]string{"list"}, f.args...)...)
					if len(f.want) == 0 {
						require.Equal(t, "no entries matching -reason \"fingerprint_mismatch\"\n", out)
						return
					}
					got, _ := tableIDs(t, out)
					require.Equal(t, f.want, got)
				})
				t.Run("count filtered by "+f.name, func(t *testing.T) {
					out := b.ok(t, append([]string{"count"}, f.args...)...)
					require.Equal(t, fmt.Sprintf("%d\n", len(f.want)), out)
				})
			}

			t.Run("count all", func(t *testing.T) {
				require.Equal(t, "5\n", b.ok(t, "count"))
			})

			t.Run("paging walks every entry once", func(t *testing.T) {
				for _, limit := range []int{1, 2, 4, 5} {
					var got []string
					args := []string{"list", "-limit", fmt.Sprint(limit)}
					for pages := 1; ; pages++ {
						require.LessOrEqual(t, pages, len(entries)+1, "too many pages")
						page, next := tableIDs(t, b.ok(t, args...))
						require.LessOrEqual(t, len(page), limit)
						got = append(got, page...)
						if next == "" {
							break
						}
						args = []string{"list", "-limit", fmt.Sprint(limit), "-cursor", next}
					}
					require.Equal(t, ids(entries), got, "limit %d", limit)
				}
			})

			t.Run("paging with a filter", func(t *testing.T) {
				first, next := tableIDs(t, b.ok(t, "list", "-reason", "permanent", "-limit", "2"))
				require.NotEmpty(t, next)
				rest, next := tableIDs(t, b.ok(t, "list", "-reason", "permanent", "-limit", "2", "-cursor", next))
				require.Empty(t, next)
				require.Equal(t, ids(entries, "order-1", "pay-1", "order-3"), append(first, rest...))
			})

			t.Run("list json", func(t *testing.T) {
				var page jsonPage
				require.NoError(t, json.Unmarshal([]byte(b.ok(t, "list", "-json", "-limit", "2")), &page))
				require.Len(t, page.Entries, 2)
				require.NotEmpty(t, page.Next)
				require.Equal(t, entries[0].ID, page.Entries[0].ID)
				require.Equal(t, entries[0].Message.Body, page.Entries[0].Message.Body)
				require.Equal(t, entries[0].ErrorChain, page.Entries[0].ErrorChain)
			})

			t.Run("show text body", func(t *testing.T) {
				e := entries[3] // order-3, a two-line body
				out := b.ok(t, "show", e.ID)
				for _, want := range []string{
					"id:              " + e.ID + "\n",
					"source:          orders\n",
					"reason:          permanent\n",
					"attempts:        3\n",
					"message id:      order-3\n",
					"message key:     key-order-3\n",
					"last failed at:  " + e.LastFailedAt.Format(time.RFC3339) + "\n",
					"first failed at: " + e.FirstFailedAt.Format(time.RFC3339) + "\n",
					"headers:\n  content-type: application/json\n  trace-id: trace-order-3\n",
					"error:\n  handle order-3: charge: card declined\n  details on a second line\n",
					"error chain (outermost first):\n" +
						"  1. handle order-3: charge: card declined\n" +
						"  2. charge: card declined\n" +
						"  3. card declined\n",
					"body (17 bytes, text):\n  line one\n  line two\n",
				} {
					require.Contains(t, out, want)
				}
			})

			t.Run("show binary body", func(t *testing.T) {
				out := b.ok(t, "show", entries[4].ID)
				require.Contains(t, out, "body (4 bytes, not text, hex):\n  00000000  ff 00 01 78")
			})

			t.Run("show json, flag after the ID", func(t *testing.T) {
				var got jsonEntry
				require.NoError(t, json.Unmarshal([]byte(b.ok(t, "show", entries[4].ID, "-json")), &got))
				require.Equal(t, entries[4].Message.Body, got.Message.Body)
				require.Nil(t, got.Message.BodyText)
				require.Equal(t, "undecodable", got.Reason)
				require.Equal(t, entries[4].Message.Headers, got.Message.Headers)
			})

			t.Run("show unknown", func(t *testing.T) {
				_, errOut, code := b.cli(t, "show", "no-such-entry")
				require.Equal(t, exitFailure, code)
				require.Equal(t, "dlqctl: show: no entry with ID \"no-such-entry\"\n", errOut)
			})
		})
	}
}

func TestPurgeAndDelete(t *testing.T) {
	t.Parallel()
	for name, newBackend := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			entries := seed(t, b.store)

			out, errOut, code := b.cli(t, "purge", "-reason", "permanent", "-source", "orders")
			require.Equal(t, exitUsage, code)
			require.Equal(t, "would purge 2 entries matching -reason \"permanent\" -source \"orders\"; add -yes to purge\n", out)
			require.Equal(t, "dlqctl: purge: refusing to purge without -yes\n", errOut)
			require.Equal(t, ids(entries), storeIDs(t, b.store), "purge without -yes changed the store")

			require.Equal(t, "purged 2\n", b.ok(t, "purge", "-reason", "permanent", "-source", "orders", "-yes"))
			require.Equal(t, ids(entries, "order-2", "pay-1", "pay-2"), storeIDs(t, b.store))

			require.Equal(t, "purged 0\n", b.ok(t, "purge", "-reason", "permanent", "-source", "orders", "-yes"))

			id := entries[2].ID // pay-1
			require.Equal(t, "deleted "+id+"\n", b.ok(t, "delete", id))
			_, err := b.store.Get(context.Background(), id)
			require.ErrorIs(t, err, dlq.ErrNotFound)
			require.Equal(t, ids(entries, "order-2", "pay-2"), storeIDs(t, b.store))

			_, errOut, code = b.cli(t, "delete", id)
			require.Equal(t, exitFailure, code)
			require.Equal(t, "dlqctl: delete: no entry with ID \""+id+"\"\n", errOut)

			require.Equal(t, "purged 2\n", b.ok(t, "purge", "-yes"))
			require.Empty(t, storeIDs(t, b.store))
			require.Equal(t, "no entries\n", b.ok(t, "list"))
		})
	}
}

// queue is a replay target: its -to, and how a test reads what reached
// it.
type queue struct {
	to string
	// length counts the messages in the queue, fetched or not.
	length func(t *testing.T) int
	// consume fetches n messages through the driver's Source.
	consume func(t *testing.T, n int) []consumer.Message
}

// fetch collects n deliveries from src, acking each.
func fetch(t *testing.T, src consumer.Source, n int) []consumer.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []consumer.Message
	for len(got) < n {
		ds, err := src.Fetch(ctx, n-len(got))
		require.NoError(t, err, "fetched %d of %d", len(got), n)
		for _, d := range ds {
			got = append(got, *d.Message())
			require.NoError(t, d.Ack(ctx))
		}
	}
	return got
}

func redisStreamQueue(t *testing.T) queue {
	t.Helper()
	client, prefix := testenv.Redis(t)
	prefix += "stream:"
	src, err := redisstream.New(client, redisstream.Options{Stream: "orders", Prefix: prefix, Block: 100 * time.Millisecond})
	require.NoError(t, err)
	return queue{
		to: "redis-stream:orders?prefix=" + url.QueryEscape(prefix),
		length: func(t *testing.T) int {
			n, err := client.XLen(context.Background(), src.StreamKey()).Result()
			require.NoError(t, err)
			return int(n)
		},
		consume: func(t *testing.T, n int) []consumer.Message { return fetch(t, src, n) },
	}
}

func pgQueue(t *testing.T, pool *pgxpool.Pool) queue {
	t.Helper()
	opts := pgqueue.Options{Table: "replayed", Queue: "orders", PollInterval: 50 * time.Millisecond}
	require.NoError(t, pgqueue.Migrate(context.Background(), pool, opts))
	src, err := pgqueue.New(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) }) // before the pool's
	return queue{
		to: "pgqueue:orders?table=replayed",
		length: func(t *testing.T) int {
			var n int
			require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM replayed WHERE queue = 'orders'").Scan(&n))
			return n
		},
		consume: func(t *testing.T, n int) []consumer.Message { return fetch(t, src, n) },
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	for _, storeKind := range []string{"postgres", "redis"} {
		for _, targetKind := range []string{"redis-stream", "pgqueue"} {
			t.Run(storeKind+" to "+targetKind, func(t *testing.T) {
				t.Parallel()
				// Both servers, whatever the store and the target: the
				// connection flags name both, as an operator's would.
				pool, schema := testenv.PostgresWithSchema(t)
				client, prefix := testenv.Redis(t)
				conn := []string{
					"-store", storeKind,
					"-postgres-url", postgresURL(t, schema),
					"-redis-addr", testenv.RedisAddr(), "-redis-prefix", prefix, "-name", "dlqctl",
				}
				var store dlq.Store
				if storeKind == "postgres" {
					require.NoError(t, dlqpg.Migrate(context.Background(), pool, dlqpg.Options{}))
					s, err := dlqpg.New(pool, dlqpg.Options{})
					require.NoError(t, err)
					store = s
				} else {
					s, err := dlqredis.New(client, dlqredis.Options{Prefix: prefix, Name: "dlqctl"})
					require.NoError(t, err)
					store = s
				}
				b := backend{store: store, conn: conn}
				var q queue
				if targetKind == "redis-stream" {
					q = redisStreamQueue(t)
				} else {
					q = pgQueue(t, pool)
				}
				entries := seed(t, store)
				permanent := ids(entries, "order-1", "pay-1", "order-3")

				out := b.ok(t, "replay", "-reason", "permanent", "-to", q.to, "-dry-run")
				require.True(t, strings.HasPrefix(out, "dry run: would replay 3 entries to "+q.to+"\n"), out)
				got, _ := tableIDs(t, strings.SplitN(out, "\n", 2)[1])
				require.Equal(t, permanent, got)
				require.Equal(t, 0, q.length(t), "a dry run published")
				require.Equal(t, ids(entries), storeIDs(t, store), "a dry run changed the store")

				require.Equal(t, "replayed 3, skipped 0\n", b.ok(t, "replay", "-reason", "permanent", "-to", q.to))
				require.Equal(t, ids(entries, "order-2", "pay-2"), storeIDs(t, store))
				require.Equal(t, 3, q.length(t))

				// The entries left the store as they were published: a
				// second replay finds nothing to send.
				require.Equal(t, "replayed 0, skipped 0\n", b.ok(t, "replay", "-reason", "permanent", "-to", q.to))
				require.Equal(t, 3, q.length(t))

				msgs := q.consume(t, 3)
				byID := map[string]consumer.Message{}
				for _, m := range msgs {
					byID[m.ID] = m
				}
				require.Len(t, byID, 3, "a message came twice")
				for _, e := range entries {
					if !slices.Contains(permanent, e.ID) {
						continue
					}
					m, ok := byID[e.Message.ID]
					require.True(t, ok, "%s was not replayed", e.Message.ID)
					require.Equal(t, e.Message.Key, m.Key)
					require.Equal(t, e.Message.Body, m.Body)
					require.Equal(t, e.Message.Headers, m.Headers)
					require.Equal(t, 1, m.Attempt, "a replayed message starts its attempts again")
				}

				// Two replays at once publish each entry once.
				var wg sync.WaitGroup
				outs, codes := make([]string, 2), make([]int, 2)
				for i := range outs {
					wg.Go(func() {
						var out, errOut bytes.Buffer
						codes[i] = run(context.Background(), append(slices.Clone(conn), "replay", "-to", q.to), &out, &errOut)
						outs[i] = out.String() + errOut.String()
					})
				}
				wg.Wait()
				var replayed int
				for i, o := range outs {
					require.Equal(t, exitOK, codes[i], o)
					var r, s int
					_, err := fmt.Sscanf(o, "replayed %d, skipped %d\n", &r, &s)
					require.NoError(t, err, o)
					replayed += r
				}
				require.Equal(t, 2, replayed, "concurrent replays: %q", outs)
				require.Empty(t, storeIDs(t, store))
				require.Equal(t, 2, q.length(t))
				require.ElementsMatch(t, []string{"order-2", "pay-2"}, msgIDs(q.consume(t, 2)))
			})
		}
	}
}

func msgIDs(msgs []consumer.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// TestUsageErrors needs no server: every mistake is caught before dlqctl
// connects.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown global flag", []string{"-verbose", "list"}, "flag provided but not defined: -verbose"},
		{"unknown store", []string{"-store", "mysql", "list"}, `unknown -store "mysql": want postgres or redis`},
		{"unknown command flag", []string{"list", "-all"}, "list: flag provided but not defined: -all"},
		{"bad flag value", []string{"list", "-limit", "many"}, `list: invalid value "many" for flag -limit`},
		{"limit zero", []string{"list", "-limit", "0"}, "list: -limit must be at least 1, got 0"},
		{"bad since", []string{"count", "-since", "yesterday"}, `count: -since: "yesterday" is neither`},
		{"negative since", []string{"count", "-since", "-2h"}, "must not be negative"},
		{"since after until", []string{"list", "-since", "1h", "-until", "2h"}, "-since 1h is not before -until 2h"},
		{"positional to list", []string{"list", "permanent"}, `list: unexpected argument "permanent"`},
		{"show without ID", []string{"show"}, "show: missing <entry-id>"},
		{"show with two IDs", []string{"show", "a", "b"}, "show: want one <entry-id>, got 2 arguments"},
		{"delete without ID", []string{"delete"}, "delete: missing <entry-id>"},
		{"replay without -to", []string{"replay", "-reason", "permanent"}, "replay: -to is required"},
		{"replay to unknown kind", []string{"replay", "-to", "kafka:orders"}, `unknown kind "kafka"`},
		{"replay to no name", []string{"replay", "-to", "redis-stream:"}, "no stream or queue name"},
		{"replay to no scheme", []string{"replay", "-to", "orders"}, `-to "orders": want redis-stream:`},
		{"replay to unknown option", []string{"replay", "-to", "pgqueue:orders?prefix=x"}, `unknown option "prefix" for pgqueue`},
		{"replay to a stream the driver refuses", []string{"replay", "-to", "redis-stream:a{b}"}, "contains a brace"},
		{"replay to a bad notify", []string{"replay", "-to", "pgqueue:orders?notify=maybe"}, `notify="maybe" is not a boolean`},
		{"replay to a repeated option", []string{"replay", "-to", "pgqueue:orders?table=a&table=b"}, `option "table" given 2 times`},
		{"bad postgres URL", []string{"-postgres-url", "postgres://%zz", "count"}, "-postgres-url"},
		{"bad table", []string{"-table", "Bad-Table", "count"}, "-table"},
		{"brace in redis name", []string{"-store", "redis", "-name", "a{b}", "count"}, "contains a brace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runCLI(t, c.args...)
			require.Equal(t, exitUsage, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			require.Contains(t, errOut, c.want)
			require.True(t, strings.HasPrefix(errOut, "dlqctl: "), errOut)
			require.Empty(t, out)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"help"}, {"-store", "redis", "help"}} {
		out, errOut, code := runCLI(t, args...)
		require.Equal(t, exitOK, code)
		require.Empty(t, errOut)
		require.Contains(t, out, "usage: dlqctl [connection flags] <command> [flags] [args]")
		for _, c := range commands {
			require.Contains(t, out, "  "+c.name+" ")
		}
	}
	out, _, code := runCLI(t, "replay", "-h")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "usage: dlqctl [connection flags] replay [filters] -to TARGET [-dry-run]")
	require.Contains(t, out, "-dry-run")
	require.Contains(t, out, "-since time")
}

func TestRuntimeErrors(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCLI(t, "-postgres-url", "postgres://postgres@127.0.0.1:1/test?connect_timeout=2", "count")
	require.Equal(t, exitFailure, code)
	require.Empty(t, out)
	require.True(t, strings.HasPrefix(errOut, "dlqctl: count: "), errOut)

	// A missing table names the flag to check.
	_, schema := testenv.PostgresWithSchema(t)
	out, errOut, code = runCLI(t, "-postgres-url", postgresURL(t, schema), "-table", "no_such_table", "list")
	require.Equal(t, exitFailure, code)
	require.Empty(t, out)
	require.Contains(t, errOut, `is -table "no_such_table" right`)
}

// TestReplayFailure replays to a queue table that does not exist: the
// publish fails, dlqctl says what it did and exits 1, and the entries stay
// for a replay that works.
func TestReplayFailure(t *testing.T) {
	t.Parallel()
	pool, schema := testenv.PostgresWithSchema(t)
	require.NoError(t, dlqpg.Migrate(context.Background(), pool, dlqpg.Options{}))
	s, err := dlqpg.New(pool, dlqpg.Options{})
	require.NoError(t, err)
	b := backend{store: s, conn: []string{"-postgres-url", postgresURL(t, schema)}}
	entries := seed(t, s)

	out, errOut, code := b.cli(t, "replay", "-to", "pgqueue:orders?table=no_such_queue&notify=true")
	require.Equal(t, exitFailure, code)
	require.Equal(t, "replayed 0, skipped 0\n", out)
	require.Contains(t, errOut, "dlqctl: replay: dlq: replay: publishing "+entries[0].ID)
	require.Contains(t, errOut, "no_such_queue")
	require.Equal(t, ids(entries), storeIDs(t, s))

	// The failed entry was unreserved, so the next replay takes it at once.
	q := pgQueue(t, pool)
	require.Equal(t, "replayed 5, skipped 0\n", b.ok(t, "replay", "-to", q.to))
	require.ElementsMatch(t, []string{"order-1", "order-2", "pay-1", "order-3", "pay-2"}, msgIDs(q.consume(t, 5)))
}

func TestParseWhen(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"2h":                        now.Add(-2 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"0s":                        now,
		"2025-05-31T08:30:00Z":      time.Date(2025, 5, 31, 8, 30, 0, 0, time.UTC),
		"2025-05-31T10:30:00+02:00": time.Date(2025, 5, 31, 8, 30, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: got %s, want %s", in, got, want)
	}
	for _, in := range []string{"yesterday", "d", "-1d", "-5m", "2025-05-31", "1.5d"} {
		_, err := parseWhen(in, now)
		require.Error(t, err, in)
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	require.Equal(t, "order 42 ✓", printable("order 42 ✓"))
	require.Equal(t, `"evil\x1b[2Jtext"`, printable("evil\x1b[2Jtext"))
	require.Equal(t, `"a\tb"`, printable("a\tb"))
	require.Equal(t, "first line …", firstLine("first line\nsecond", 80))
	require.Equal(t, "abcd…", firstLine("abcdefgh", 5))
}
