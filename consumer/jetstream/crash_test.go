package jetstream_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
)

// crashEnv carries a crashConfig, as JSON, from TestCrash to the child
// process that runs TestCrashChild.
const crashEnv = "IDEMQ_JETSTREAM_CRASH_CHILD"

type crashConfig struct {
	URL, Stream string
	Messages    int
	Lease       time.Duration
}

// TestCrash kills a consumer process that holds every message of a stream
// while its handlers run, and checks that another consumer gets each of
// them once its ack wait lapses, as the second delivery, and that none is
// lost or acknowledged twice.
func TestCrash(t *testing.T) {
	t.Parallel()
	const n = 25
	const lease = time.Second
	nc := connect(t)
	cfg := crashConfig{URL: natsURL(), Stream: uniqueStream(t, nc), Messages: n, Lease: lease}
	src, pub := newQueue(t, nc, jetstream.Options{Stream: cfg.Stream, AckWait: lease})
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("crash-%02d", i), Body: []byte{byte(i)}}
	}
	require.NoError(t, pub.Publish(t.Context(), msgs...))

	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var waitOnce sync.Once
	wait := func() { waitOnce.Do(func() { _ = cmd.Wait() }) }
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		wait()
		if t.Failed() {
			t.Logf("child's stderr:\n%s", stderr.String())
		}
	})

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	want := fmt.Sprintf("holding %d", n)
	timeout := time.After(time.Minute)
wait:
	for {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the child exited before holding every message")
			if line == want {
				break wait
			}
		case <-timeout:
			require.FailNow(t, "the child did not report holding every message", "waited a minute for %q", want)
		}
	}

	// While the child lives, its runtime extends the leases: after more
	// than a lease, every message is still its own, delivered once.
	time.Sleep(3 * lease / 2)
	info := consumerInfo(t, nc, src)
	require.EqualValues(t, n, info.NumAckPending, "held by the child")
	require.Zero(t, info.NumRedelivered, "the child's leases were not extended")
	require.Zero(t, info.NumPending)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	wait()

	var (
		mu       sync.Mutex
		attempts = map[string][]int{}
		acked    atomic.Int64
	)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.ID] = append(attempts[m.ID], m.Attempt)
		return nil
	})
	counted := ackCounter{src, func(*consumer.Message) {
		if acked.Add(1) == n {
			cancel()
		}
	}}
	c, err := consumer.New(counted, h, consumer.Config{MaxInFlight: 8, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, c.Run(ctx))
	require.EqualValues(t, n, acked.Load(), "acknowledged after the crash")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, n)
	for _, m := range msgs {
		require.Equal(t, []int{2}, attempts[m.ID], "attempts of %s", m.ID)
	}
	requireDrained(t, nc, src)
}

// TestCrashChild is the process TestCrash kills: it consumes with handlers
// that never return, and prints "holding N" once it holds all N messages.
func TestCrashChild(t *testing.T) {
	js := os.Getenv(crashEnv)
	if js == "" {
		t.Skip("run by TestCrash in a child process")
	}
	var cfg crashConfig
	require.NoError(t, json.Unmarshal([]byte(js), &cfg))
	nc, err := nats.Connect(cfg.URL)
	require.NoError(t, err)
	src, err := jetstream.New(nc, jetstream.Options{Stream: cfg.Stream, AckWait: cfg.Lease})
	require.NoError(t, err)
	var held atomic.Int64
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if held.Add(1) == int64(cfg.Messages) {
			fmt.Printf("holding %d\n", cfg.Messages)
		}
		select {} // until killed
	})
	c, err := consumer.New(src, h, consumer.Config{MaxInFlight: cfg.Messages})
	require.NoError(t, err)
	_ = c.Run(context.Background())
	t.Fatal("Run returned in the crash child")
}
