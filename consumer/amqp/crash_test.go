package amqp_test

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

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
)

// crashEnv carries a crashConfig, as JSON, from TestCrash to the child
// process that runs TestCrashChild.
const crashEnv = "IDEMQ_AMQP_CRASH_CHILD"

type crashConfig struct {
	URL, Queue string
	Messages   int
}

// TestCrash kills (SIGKILL) a consumer process that holds every message of
// a queue while its handlers run, and checks that another consumer gets
// each of them, as the second delivery, and that none is lost or
// acknowledged twice. While the child lives, the broker gives its messages
// to no one else: without a lease, the channel is the lease.
func TestCrash(t *testing.T) {
	t.Parallel()
	const n = 25
	url := amqp.BrokerURL(t)
	q := amqp.TempQueue(t, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("crash-%02d", i), Body: []byte{byte(i)}}
	}
	require.NoError(t, pub.Publish(t.Context(), msgs...))

	js, err := json.Marshal(crashConfig{URL: url, Queue: q, Messages: n})
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

	// While the child lives, nobody else gets its messages.
	src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: n})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	ds, err := src.Fetch(ctx, n)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "got %d deliveries while the child held them", len(ds))
	require.Zero(t, amqp.QueueDepth(t, url, q), "messages ready while the child holds them")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	wait()

	var (
		mu       sync.Mutex
		attempts = map[string][]int{}
		acked    atomic.Int64
	)
	ctx, cancel = context.WithTimeout(t.Context(), time.Minute)
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
	c, err := consumer.New(counted, h, consumer.Config{MaxInFlight: n, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, c.Run(ctx))
	require.EqualValues(t, n, acked.Load(), "acknowledged after the crash")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, n)
	for _, m := range msgs {
		require.Equal(t, []int{2}, attempts[m.ID], "attempts of %s", m.ID)
	}
	requireNothing(t, src, time.Second)
	require.Zero(t, amqp.QueueDepth(t, url, q))
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
	src, err := amqp.New(amqp.Options{URL: cfg.URL, Queue: cfg.Queue, Prefetch: cfg.Messages})
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

// requireNothing checks that src delivers nothing within wait.
func requireNothing(t *testing.T, src consumer.Source, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, ds)
}

// ackCounter is a Source whose deliveries call onAck after each successful
// Ack.
type ackCounter struct {
	consumer.Source
	onAck func(*consumer.Message)
}

func (s ackCounter) Fetch(ctx context.Context, limit int) ([]consumer.Delivery, error) {
	ds, err := s.Source.Fetch(ctx, limit)
	for i, d := range ds {
		ds[i] = countedDelivery{d, s.onAck}
	}
	return ds, err
}

type countedDelivery struct {
	consumer.Delivery
	onAck func(*consumer.Message)
}

func (d countedDelivery) Ack(ctx context.Context) error {
	err := d.Delivery.Ack(ctx)
	if err == nil {
		d.onAck(d.Message())
	}
	return err
}
