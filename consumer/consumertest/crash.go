package consumertest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// crashEnv carries a crashChild, as JSON, from [Crash] to the copy of the
// test binary it starts.
const crashEnv = "IDEMQ_CONSUMERTEST_CRASH_CHILD"

// crashChild is what the child process is told.
type crashChild struct {
	Held  int             // its MaxInFlight: what it holds when killed
	Child json.RawMessage // CrashConfig.Child
}

// CrashConfig describes a run of [Crash].
type CrashConfig struct {
	// Publisher publishes Held+Spare messages to the queue before the
	// child starts.
	Publisher consumer.Publisher

	// Child is what the child process needs to open a Source on the queue
	// (an address, a queue name, a lease): Crash passes it, as JSON, to the
	// open function of [CrashChild] in the child.
	Child any

	// Held is how many messages the child holds when it is killed: it
	// runs with MaxInFlight Held and handlers that never return.
	Held int

	// Spare is how many messages are published beyond Held, which the
	// child, full, never fetches.
	Spare int

	// Holding, when set, runs while the child holds its messages, just
	// before it is killed: the driver's checks that they are held, and by
	// the child alone.
	Holding func()

	// Source is the survivor: after the kill, a Consumer on it must get
	// every message.
	Source consumer.Source

	// MinRedelay, when set, is the earliest, after the kill, that a
	// message the child held may come back (its last lease extension
	// lasts at least this long).
	MinRedelay time.Duration

	// Within bounds how long after the kill the survivor may take to get
	// and acknowledge every message. Default one minute.
	Within time.Duration
}

// Crash checks that a consumer process killed while it holds messages
// loses none of them. It publishes Held+Spare messages, starts a copy of
// the test binary that runs only the driver's TestCrashChild (which calls
// [CrashChild]), waits until that child holds Held of them, calls Holding,
// and kills the child (SIGKILL on Unix: nothing in it runs on the way out).
// Then a Consumer on Source must get every message exactly once and
// acknowledge it: those the child held as their second delivery (Attempt
// 2), no sooner than MinRedelay after the kill; the spares as their first.
//
// The driver's test binary must therefore have a test named
// TestCrashChild whose body is a call of [CrashChild]. What the backend
// holds afterwards is for the caller to check; Source is still open.
func Crash(t *testing.T, cfg CrashConfig) {
	t.Helper()
	require.Positive(t, cfg.Held, "consumertest: CrashConfig.Held")
	require.GreaterOrEqual(t, cfg.Spare, 0, "consumertest: CrashConfig.Spare")
	require.NotNil(t, cfg.Publisher, "consumertest: CrashConfig.Publisher")
	require.NotNil(t, cfg.Source, "consumertest: CrashConfig.Source")
	total := cfg.Held + cfg.Spare
	msgs := make([]consumer.Message, total)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("crash-%02d", i), Body: []byte{byte(i)}}
	}
	require.NoError(t, cfg.Publisher.Publish(t.Context(), msgs...))

	kill := startCrashChild(t, cfg)
	if cfg.Holding != nil {
		cfg.Holding()
	}
	kill()
	killed := time.Now()

	var (
		mu       sync.Mutex
		attempts = make(map[string][]int, total)
		arrived  = make(map[string]time.Time, total)
		acked    atomic.Int64
	)
	within := cmp.Or(cfg.Within, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	h := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.ID] = append(attempts[m.ID], m.Attempt)
		arrived[m.ID] = time.Now()
		return nil
	})
	counted := ackCounter{cfg.Source, func(*consumer.Message) {
		if acked.Add(1) == int64(total) {
			cancel()
		}
	}}
	c, err := consumer.New(counted, h, consumer.Config{MaxInFlight: total, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, c.Run(ctx))
	require.EqualValues(t, total, acked.Load(), "acknowledged within %s of the crash", within)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, total, "messages lost")
	redelivered, fresh := 0, 0
	for _, m := range msgs {
		got := attempts[m.ID]
		require.Len(t, got, 1, "message %s handled %d times, at attempts %v", m.ID, len(got), got)
		switch got[0] {
		case 1:
			fresh++
			require.LessOrEqual(t, fresh, cfg.Spare,
				"message %s came at Attempt 1, but only the %d spares were never delivered", m.ID, cfg.Spare)
		case 2:
			redelivered++
			require.False(t, arrived[m.ID].Before(killed.Add(cfg.MinRedelay)),
				"message %s, held by the killed child, was redelivered %s after the kill, before its lease could end",
				m.ID, arrived[m.ID].Sub(killed))
		default:
			require.Failf(t, "wrong Attempt", "message %s delivered with Attempt %d, want 2 (held by the child) or 1 (a spare)", m.ID, got[0])
		}
	}
	require.Equal(t, cfg.Held, redelivered, "messages the child held, redelivered with Attempt 2")
}

// startCrashChild starts the child, returns once it holds cfg.Held
// messages, and returns the function that kills it.
func startCrashChild(t *testing.T, cfg CrashConfig) (kill func()) {
	t.Helper()
	child, err := json.Marshal(cfg.Child)
	require.NoError(t, err)
	env, err := json.Marshal(crashChild{Held: cfg.Held, Child: child})
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(env))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	// The child's stdout is read to its end, and kept: a failing child
	// test reports there.
	want := fmt.Sprintf("holding %d", cfg.Held)
	var (
		outMu sync.Mutex
		out   strings.Builder
	)
	holding := make(chan bool, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			outMu.Lock()
			out.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			if !said && sc.Text() == want {
				said = true
				holding <- true
			}
		}
		if !said {
			holding <- false
		}
	}()

	var (
		waitOnce sync.Once
		waitErr  error
	)
	wait := func() error {
		waitOnce.Do(func() {
			<-readDone // Wait closes stdout: read all of it first
			waitErr = cmd.Wait()
		})
		return waitErr
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = wait()
		if t.Failed() {
			outMu.Lock()
			defer outMu.Unlock()
			t.Logf("crash child's stdout:\n%s\ncrash child's stderr:\n%s", out.String(), stderr.String())
		}
	})

	select {
	case ok := <-holding:
		require.True(t, ok, "the child exited before holding %d messages", cfg.Held)
	case <-time.After(time.Minute):
		require.FailNow(t, "the child did not report holding its messages", "waited a minute for %q", want)
	}
	return func() {
		t.Helper()
		require.NoError(t, cmd.Process.Kill())
		require.Error(t, wait(), "the child should have died of its kill")
	}
}

// CrashChild is the body of the driver's TestCrashChild, the process that
// [Crash] kills. Where Crash did not start it, as in an ordinary go test
// run, it skips t. Otherwise it decodes [CrashConfig.Child] into a T, opens
// a Source on the queue with open, and consumes with MaxInFlight
// [CrashConfig.Held] and handlers that never return; it prints
// "holding N" once it holds all N messages, and waits to be killed.
//
//	func TestCrashChild(t *testing.T) {
//		consumertest.CrashChild(t, func(cfg crashConfig) consumer.Source {
//			src, err := mydriver.New(mydriver.Options{URL: cfg.URL, Queue: cfg.Queue})
//			require.NoError(t, err)
//			return src
//		})
//	}
func CrashChild[T any](t *testing.T, open func(child T) consumer.Source) {
	t.Helper()
	env := os.Getenv(crashEnv)
	if env == "" {
		t.Skip("run by consumertest.Crash in a process of its own")
	}
	var cfg crashChild
	require.NoError(t, json.Unmarshal([]byte(env), &cfg))
	var child T
	require.NoError(t, json.Unmarshal(cfg.Child, &child))
	src := open(child)
	var held atomic.Int64
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if held.Add(1) == int64(cfg.Held) {
			fmt.Printf("holding %d\n", cfg.Held)
		}
		select {} // until killed
	})
	c, err := consumer.New(src, h, consumer.Config{MaxInFlight: cfg.Held})
	require.NoError(t, err)
	_ = c.Run(context.Background())
	t.Fatal("Run returned in the crash child")
}
