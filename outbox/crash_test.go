package outbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/outbox"
)

// Environment of the crash child: set by TestCrashLosesNothing for the
// copy of the test binary it starts.
const (
	envCrashChild  = "IDEMQ_OUTBOX_CRASH_CHILD" // "1" in the child
	envCrashURL    = "IDEMQ_OUTBOX_CRASH_URL"
	envCrashSchema = "IDEMQ_OUTBOX_CRASH_SCHEMA"
	envCrashAfter  = "IDEMQ_OUTBOX_CRASH_AFTER" // publishes before the child blocks

	crashPublished = "PUB"     // the child's line for each message published: PUB <id>
	crashBlocked   = "BLOCKED" // the child's line once it blocks
)

// crashOptions are the relay options of both the child and the parent:
// small batches, so that the child is killed with a batch half published,
// and a short lease, so that the parent need not wait long for it.
var crashOptions = outbox.Options{
	Lease:        time.Second,
	PollInterval: 50 * time.Millisecond,
	BatchKeys:    4,
	BatchPerKey:  10,
	BatchUnkeyed: 10,
	Concurrency:  4,
}

// TestCrashLosesNothing is the third acceptance test. A relay in a child
// process publishes, then blocks in the middle of a batch, and is killed
// with SIGKILL, so that nothing in it runs on the way out. A relay here
// then publishes everything the child did not record: every event is
// published at least once, and each key's events, in the child's and
// this relay's output together, first appear in their order.
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	const (
		nkeys   = 10
		perKey  = 30
		unkeyed = 50
		after   = 60 // the child blocks after publishing this many
	)
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	require.NoError(t, outbox.Migrate(ctx, pool, crashOptions))
	w, err := outbox.NewWriter(crashOptions)
	require.NoError(t, err)

	// Each key's events numbered in their order, enqueued in batches
	// that interleave the keys.
	for e := 0; e < perKey; e += 5 {
		var msgs []outbox.Message
		for k := range nkeys {
			for i := e; i < e+5; i++ {
				msgs = append(msgs, outbox.Message{ID: fmt.Sprintf("k%02d-%03d", k, i), Key: fmt.Sprintf("k%02d", k)})
			}
		}
		enqueue(t, pool, w, msgs...)
	}
	for i := range unkeyed {
		enqueue(t, pool, w, outbox.Message{ID: fmt.Sprintf("u-%03d", i)})
	}
	total := nkeys*perKey + unkeyed

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(),
		envCrashChild+"=1",
		envCrashURL+"="+testenv.PostgresURL(),
		envCrashSchema+"="+schema,
		envCrashAfter+"="+strconv.Itoa(after),
	)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	child.Stderr = &stderr
	require.NoError(t, child.Start())
	reaped := false
	defer func() {
		if !reaped {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()

	// Read what the child published until it says it blocks.
	var (
		fromChild []string
		blocked   bool
	)
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		if id, ok := strings.CutPrefix(line, crashPublished+" "); ok {
			fromChild = append(fromChild, id)
		}
		if line == crashBlocked {
			blocked = true
			break
		}
	}
	require.True(t, blocked, "the child ended without blocking; stderr:\n%s", stderr.String())
	require.GreaterOrEqual(t, len(fromChild), after)
	var leased int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(*) FROM idemq_outbox_cursors WHERE lease_token IS NOT NULL`).Scan(&leased))
	require.Positive(t, leased, "the child holds no key: it was not killed mid-batch")

	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	err = child.Wait()
	reaped = true
	require.Error(t, err, "the child should have died of SIGKILL")

	rec := newRecorder()
	stop := runRelay(t, pool, rec, crashOptions)
	// Everything the child did not record must come from here.
	var notRecorded int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_outbox`).Scan(&notRecorded))
	rec.waitDistinct(t, notRecorded, 30*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()
	got, _ := rec.snapshot()

	// The union holds every event; each key's first appearances are in
	// order; this relay published each key's events in order, once.
	seen := map[string]bool{}
	next := map[string]int{}   // per key: the next event to appear first
	parent := map[string]int{} // per key: the last event published here
	redone := 0
	check := func(id string, here bool) {
		if strings.HasPrefix(id, "u-") {
			seen[id] = true
			return
		}
		key, num, ok := strings.Cut(id, "-")
		require.True(t, ok, id)
		i, err := strconv.Atoi(num)
		require.NoError(t, err)
		if here {
			last, ok := parent[key]
			require.True(t, !ok || i == last+1, "key %s: published %d after %d here", key, i, last)
			parent[key] = i
		}
		if seen[id] {
			redone++
			return
		}
		seen[id] = true
		require.Equal(t, next[key], i, "key %s: event %d first appeared before event %d", key, i, next[key])
		next[key]++
	}
	for _, id := range fromChild {
		check(id, false)
	}
	for _, p := range got {
		check(p.msg.ID, true)
	}
	require.Len(t, seen, total, "events lost")
	for k := range nkeys {
		require.Equal(t, perKey, next[fmt.Sprintf("k%02d", k)])
	}
	// The child published events it never recorded: they came again.
	require.Positive(t, redone, "no event published twice: the kill did not land mid-batch")
	t.Logf("child published %d, parent %d, %d twice", len(fromChild), len(got), redone)
}

// TestCrashChild is the relay that TestCrashLosesNothing kills. It runs
// only in the process started by that test.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("run by TestCrashLosesNothing in a process of its own")
	}
	after, err := strconv.Atoi(os.Getenv(envCrashAfter))
	require.NoError(t, err)
	cfg, err := pgxpool.ParseConfig(os.Getenv(envCrashURL))
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = os.Getenv(envCrashSchema)
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)

	var (
		mu   sync.Mutex
		done int
	)
	pub := outbox.PublisherFunc(func(_ context.Context, _ string, msgs ...consumer.Message) error {
		mu.Lock()
		if done >= after {
			mu.Unlock()
			select {} // until killed
		}
		defer mu.Unlock()
		for _, m := range msgs {
			fmt.Printf("%s %s\n", crashPublished, m.ID)
		}
		done += len(msgs)
		if done >= after {
			fmt.Println(crashBlocked)
		}
		return nil
	})
	opts := crashOptions
	opts.Logger = quietLogger()
	r, err := outbox.NewRelay(pool, pub, opts)
	require.NoError(t, err)
	require.NoError(t, r.Run(context.Background()))
}
