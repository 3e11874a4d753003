package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
)

// The tests that need servers run one after the other, not in parallel:
// each holds a dozen or two PostgreSQL connections, on a server that other
// packages' tests share.

// Environment of the child process that TestKillChild starts.
const (
	envChild     = "IDEMQ_ORDERS_CHILD"      // "1" in the child
	envChildArgs = "IDEMQ_ORDERS_CHILD_ARGS" // its command line, one argument a line
)

// testLease is the lease of the tests' relays and consumers: what a killed
// one leaves waits this long before it is taken over.
const testLease = time.Second

// env is a schema and a Redis key prefix of a test's own.
type env struct {
	pool   *pgxpool.Pool
	schema string
	prefix string
}

func newEnv(t *testing.T) env {
	t.Helper()
	pool, schema := testenv.PostgresWithSchema(t)
	_, prefix := testenv.Redis(t)
	return env{pool: pool, schema: schema, prefix: prefix}
}

// flags is the command line for e with broker: the schema as the
// search_path, the stream under the prefix, short leases.
func (e env) flags(t *testing.T, broker string) []string {
	t.Helper()
	u, err := url.Parse(testenv.PostgresURL())
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", e.schema)
	u.RawQuery = q.Encode()
	return []string{
		"-postgres-url", u.String(),
		"-redis-addr", testenv.RedisAddr(),
		"-redis-prefix", e.prefix,
		"-broker", broker,
		"-lease", testLease.String(),
	}
}

// app opens the program's app on e, as run would with cfg's flags.
func (e env) app(t *testing.T, broker string, work time.Duration) *app {
	t.Helper()
	cfg := config{
		postgresURL: testenv.PostgresURL(),
		redisAddr:   testenv.RedisAddr(),
		redisPrefix: e.prefix,
		stream:      "orders",
		broker:      broker,
		lease:       testLease,
		work:        work,
	}
	a, err := openApp(t.Context(), cfg, e.schema, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.close) // before testenv's cleanups, which drop the schema
	return a
}

var brokers = []string{"redis", "postgres"}

// TestChainWithRestarts runs the demonstration's chain on each broker:
// orders written while the relay and the consumer are each killed three
// times in the middle of a batch and restarted. Every committed event has
// exactly one effect; the kills did cost duplicates and rollbacks, which
// the inbox absorbed.
func TestChainWithRestarts(t *testing.T) {
	for _, broker := range brokers {
		t.Run(broker, func(t *testing.T) {
			a := newEnv(t).app(t, broker, 10*time.Millisecond)
			var out strings.Builder
			res, err := a.chaos(t.Context(), chaosPlan{orders: 150, rate: 150, kills: 3}, &out)
			t.Log("\n" + out.String())
			require.NoError(t, err)

			w, r := res.written, res.report
			require.Equal(t, 150, w.committed+w.rolledBack)
			require.Equal(t, 15, w.rolledBack)
			require.Equal(t, 75, w.paid)
			require.Equal(t, 3, res.relayKills)
			require.Equal(t, 3, res.consumerKills)
			require.Equal(t, 4, res.relayRuns)
			require.Equal(t, 4, res.consumerRuns)

			// Exactly once, counted in PostgreSQL.
			require.Empty(t, r.problems())
			require.EqualValues(t, w.committed, r.orders)
			require.EqualValues(t, w.paid, r.paid)
			require.EqualValues(t, w.events(), r.processed)
			require.EqualValues(t, w.committed, r.shipments)
			require.Zero(t, r.noShipment)
			require.Zero(t, r.extraShipments)
			require.Zero(t, r.wrongCustomers)
			require.Zero(t, r.rolledBack)

			// At least once on the way, and what the kills cost.
			s := a.stats
			published := s.get(metricBrokerPublished)
			events := int64(w.events())
			require.GreaterOrEqual(t, published, events+3, "each relay killed mid-batch leaves at least one message published and not recorded")
			require.GreaterOrEqual(t, s.get(idempotency.MetricDuplicatesSkipped), published-events, "every extra copy is skipped")
			// A kill can cut off the answer to a commit that took place:
			// that effect counts in PostgreSQL (above), not here.
			committed := s.get(metricEffectsCommitted)
			require.LessOrEqual(t, committed, events)
			require.LessOrEqual(t, events-committed, res.heldAtKills, "only a message held at a kill can commit unseen")
			require.GreaterOrEqual(t, s.get(metricEffectsTried)-events, int64(3), "each consumer killed in a transaction rolls it back")
		})
	}
}

// TestRolledBackOrder: an order whose transaction rolls back leaves no
// event in the outbox and, once the chain has run, no effect; the
// committed order beside it has its two.
func TestRolledBackOrder(t *testing.T) {
	a := newEnv(t).app(t, "redis", 0)
	ctx := t.Context()
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		require.NoError(t, a.pool.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}

	declined := order{ID: "ord-declined", Customer: "cust-01", Amount: 1200}
	require.NoError(t, a.createOrder(ctx, declined, false))
	require.Zero(t, count(`SELECT count(*) FROM `+outboxTable), "a rolled-back order left an event")
	require.Zero(t, count(`SELECT count(*) FROM orders`))
	require.ErrorContains(t, a.payOrder(ctx, declined.ID), "no unpaid order")

	kept := order{ID: "ord-kept", Customer: "cust-01", Amount: 3400}
	require.NoError(t, a.createOrder(ctx, kept, true))
	require.NoError(t, a.payOrder(ctx, kept.ID))
	require.EqualValues(t, 2, count(`SELECT count(*) FROM `+outboxTable))

	runCtx, stop := context.WithCancel(ctx)
	relayed, consumed := make(chan error, 1), make(chan error, 1)
	go func() { relayed <- a.runRelay(runCtx) }()
	go func() { consumed <- a.runConsumer(runCtx) }()
	settled := a.waitSettled(runCtx)
	stop()
	require.NoError(t, <-relayed)
	require.NoError(t, <-consumed)
	require.True(t, settled)

	r, err := a.check(ctx, []string{declined.ID})
	require.NoError(t, err)
	require.Empty(t, r.problems())
	require.Zero(t, r.rolledBack)
	require.EqualValues(t, 1, r.orders)
	require.EqualValues(t, 2, r.processed)
	require.EqualValues(t, 2, a.stats.get(metricBrokerPublished), "only the committed order's events went out")
	require.Zero(t, count(`SELECT count(*) FROM `+inboxTable+` WHERE key LIKE 'ord-declined%'`))
	require.EqualValues(t, 1, count(`SELECT count(*) FROM shipments WHERE order_id = $1 AND status = 'ready'`, kept.ID))
	require.EqualValues(t, 3400, count(`SELECT spent_cents FROM customers WHERE customer = 'cust-01'`))
}

// TestKillChild runs the relay and the consumer in a child process, kills
// it with SIGKILL while orders are being written and consumed, so nothing
// in it runs on the way out, and then runs the roles here to completion:
// no effect is lost or doubled.
func TestKillChild(t *testing.T) {
	for _, broker := range brokers {
		t.Run(broker, func(t *testing.T) {
			e := newEnv(t)
			flags := e.flags(t, broker)
			ctx := t.Context()
			a := e.app(t, broker, 0) // the tables, before anyone looks at them

			// The writer, here, for a second or so.
			var wout, werr syncBuffer
			wrote := make(chan int, 1)
			go func() {
				wrote <- run(ctx, append([]string{"-role", "writer", "-orders", "150", "-rate", "150"}, flags...), &wout, &werr)
			}()

			child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
			child.Env = append(os.Environ(), envChild+"=1",
				envChildArgs+"="+strings.Join(append([]string{"-role", "relay,consumer", "-work", "5ms"}, flags...), "\n"))
			var cout, cerr syncBuffer
			child.Stdout, child.Stderr = &cout, &cerr
			require.NoError(t, child.Start())
			exited := make(chan error, 1)
			go func() { exited <- child.Wait() }()
			defer func() {
				_ = child.Process.Kill()
				<-exited
			}()

			// Kill it once it has taken some events into effect, while the
			// writer is still writing.
			processed := func() int64 {
				var n int64
				require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM `+inboxTable).Scan(&n))
				return n
			}
			deadline := time.Now().Add(30 * time.Second)
			for processed() < 40 {
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("the child ended before it was killed: %v\nstderr:\n%s", err, cerr.String())
				case <-time.After(10 * time.Millisecond):
				}
				require.True(t, time.Now().Before(deadline), "the child processed too little; child's stdout:\n%s\nchild's stderr:\n%s\nwriter's:\n%s%s",
					cout.String(), cerr.String(), wout.String(), werr.String())
			}
			require.NoError(t, child.Process.Signal(syscall.SIGKILL))
			err := <-exited
			exited <- err
			require.Error(t, err, "the child should have died of SIGKILL")
			atKill := processed()

			require.Equal(t, exitOK, <-wrote, werr.String())
			require.Contains(t, wout.String(), "135 orders committed, 15 rolled back, 75 paid: 210 events")
			before, err := a.check(ctx, nil)
			require.NoError(t, err)
			require.Less(t, atKill, before.events(), "the child was killed with nothing left to do")
			t.Logf("killed with %d of %d events processed; outbox %d, broker %d", atKill, before.events(), before.pending, before.queued)

			// The roles again, here, until everything has drained: the
			// command checks and says ok.
			var out, errOut strings.Builder
			code := run(ctx, append([]string{"-role", "all", "-orders", "0"}, flags...), &out, &errOut)
			require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			require.Contains(t, out.String(), "ok: every committed event took effect exactly once")

			r, err := a.check(ctx, nil)
			require.NoError(t, err)
			require.Empty(t, r.problems())
			require.EqualValues(t, 135, r.orders)
			require.EqualValues(t, 75, r.paid)
			require.EqualValues(t, 210, r.processed)
			require.EqualValues(t, 135, r.shipments)
		})
	}
}

// TestChildProcess is the relay and consumer that TestKillChild kills. It
// runs only in the process that test starts.
func TestChildProcess(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		t.Skip("run by TestKillChild in a process of its own")
	}
	args := strings.Split(os.Getenv(envChildArgs), "\n")
	code := run(context.Background(), args, os.Stdout, os.Stderr) // until killed
	t.Fatalf("the child's run returned %d before it was killed", code)
}

// TestDemo runs -demo as a user would, in the schema and stream it makes
// for itself.
func TestDemo(t *testing.T) {
	for _, broker := range brokers {
		t.Run(broker, func(t *testing.T) {
			pool := testenv.Postgres(t)   // skips, or fails, without the servers
			_, prefix := testenv.Redis(t) // removes whatever the demo leaves under prefix
			var out, errOut strings.Builder
			code := run(t.Context(), []string{"-demo", "-broker", broker, "-orders", "100", "-rate", "200",
				"-postgres-url", testenv.PostgresURL(), "-redis-addr", testenv.RedisAddr(), "-redis-prefix", prefix}, &out, &errOut)
			require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			got := out.String()
			require.Contains(t, got, "relay     4 runs, 3 killed mid-batch")
			require.Contains(t, got, "consumer  4 runs, 3 killed mid-batch")
			require.Contains(t, got, "ok: every committed event took effect exactly once")
			require.Empty(t, errOut.String())

			// The demonstration cleaned up after itself.
			var schemas int
			require.NoError(t, pool.QueryRow(t.Context(),
				`SELECT count(*) FROM pg_namespace WHERE nspname = $1`, demoSchemaOf(t, got)).Scan(&schemas))
			require.Zero(t, schemas)
		})
	}
}

// demoSchemaOf reads the demonstration's schema from its first line.
func demoSchemaOf(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "PostgreSQL schema \"")
	require.True(t, ok, out)
	schema, _, ok := strings.Cut(rest, "\"")
	require.True(t, ok, out)
	return schema
}

// TestUnreachable: -demo, and every role, say which server they could not
// reach and exit 2.
func TestUnreachable(t *testing.T) {
	closed := "postgres://postgres@127.0.0.1:1/test?connect_timeout=2"
	for _, args := range [][]string{
		{"-demo", "-postgres-url", closed},
		{"-role", "check", "-postgres-url", closed},
	} {
		var out, errOut strings.Builder
		require.Equal(t, exitUnreachable, run(t.Context(), args, &out, &errOut), "%q", args)
		require.Contains(t, errOut.String(), "PostgreSQL unreachable at 127.0.0.1:1/test")
		if args[0] == "-demo" {
			require.Contains(t, errOut.String(), "-demo needs PostgreSQL and Redis")
		}
	}

	t.Run("redis", func(t *testing.T) {
		testenv.Postgres(t)
		var out, errOut strings.Builder
		code := run(t.Context(), []string{"-demo", "-postgres-url", testenv.PostgresURL(), "-redis-addr", "127.0.0.1:1"}, &out, &errOut)
		require.Equal(t, exitUnreachable, code, errOut.String())
		require.Contains(t, errOut.String(), "Redis unreachable at 127.0.0.1:1")
		require.Contains(t, errOut.String(), "-demo needs PostgreSQL and Redis")
	})
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-role", "reader"},
		{"-role", "writer,check"},
		{"-orders", "-1"},
		{"-rate", "-5"},
		{"-broker", "kafka"},
		{"-lease", "1ms"},
		{"-stream", "a{b}"},
		{"-redis-prefix", "x{"},
		{"extra"},
		{"-nope"},
	} {
		var out, errOut strings.Builder
		require.Equal(t, exitUsage, run(context.Background(), args, &out, &errOut), "%q", args)
		require.NotEmpty(t, errOut.String(), "%q", args)
		require.Empty(t, out.String(), "%q", args)
	}
	var out, errOut strings.Builder
	require.Equal(t, exitOK, run(context.Background(), []string{"-h"}, &out, &errOut))
	require.Contains(t, errOut.String(), "usage: orders")
}

func TestParseRoles(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		"all":                      {roleWriter, roleRelay, roleConsumer},
		"check":                    {roleCheck},
		"relay":                    {roleRelay},
		"relay, consumer":          {roleRelay, roleConsumer},
		"consumer,relay,consumer":  {roleConsumer, roleRelay},
		"writer,relay,consumer":    {roleWriter, roleRelay, roleConsumer},
		"writer,consumer":          {roleWriter, roleConsumer},
		"relay,consumer,writer   ": {roleRelay, roleConsumer, roleWriter},
	} {
		got, err := parseRoles(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "all,check", "writer,", "Writer"} {
		_, err := parseRoles(in)
		require.Error(t, err, "%q", in)
	}
}

func TestEventID(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ord-1:created", eventID("ord-1", typeCreated))
	require.Equal(t, "ord-1:paid", eventID("ord-1", typePaid))
	m := message(typePaid, order{ID: "ord-1", Customer: "c", Amount: 5})
	require.Equal(t, "ord-1", m.Key, "an order's events share a key: published in commit order")
	require.Equal(t, fmt.Sprintf(`{"type":%q,"order":"ord-1","customer":"c","amount_cents":5}`, typePaid), string(m.Body))
}

// syncBuffer is a strings.Builder safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
