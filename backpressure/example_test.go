package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
)

// An Admission with a limit of one: while the first caller holds the
// slot, the second is rejected at once with a hint of when to come back,
// instead of queueing on a dependency that is already busy.
func ExampleAdmission() {
	ctx := context.Background()
	payments, err := backpressure.NewAdmission(backpressure.AdmissionOptions{
		Name:       "payments",
		Limit:      1,
		RetryAfter: 2 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println("first:", payments.Acquire(ctx))

	err = payments.Acquire(ctx)
	fmt.Println("second:", err)
	fmt.Println("rejected:", errors.Is(err, backpressure.ErrRejected))
	var rej *backpressure.RejectedError
	if errors.As(err, &rej) {
		fmt.Println("retry after:", rej.RetryAfter)
	}

	payments.Release() // the first caller is done
	fmt.Println("third:", payments.Acquire(ctx))
	payments.Release()

	// Output:
	// first: <nil>
	// second: backpressure: payments rejected: limit reached (retry after 2s)
	// rejected: true
	// retry after: 2s
	// third: <nil>
}

// A breaker trips after three failures in a row and then rejects calls
// without making them, so the failing partner gets room to recover. An
// operator who knows the partner is back closes it by hand.
func ExampleBreaker() {
	ctx := context.Background()
	partner, err := backpressure.NewBreaker(backpressure.BreakerOptions{
		Name:                "partner",
		ConsecutiveFailures: 3,
		OpenTimeout:         time.Minute,
		OnStateChange: func(name string, from, to backpressure.State) {
			fmt.Printf("%s: %s -> %s\n", name, from, to)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	errUnavailable := errors.New("partner unavailable")
	calls := 0
	call := func(context.Context) error {
		calls++
		return errUnavailable
	}
	for range 3 {
		err := partner.Do(ctx, call)
		fmt.Println("call:", err)
	}

	err = partner.Do(ctx, call)
	fmt.Println("open:", errors.Is(err, backpressure.ErrOpen))
	fmt.Println("rejected:", errors.Is(err, backpressure.ErrRejected))
	fmt.Println("calls made:", calls)

	partner.Close()
	err = partner.Do(ctx, func(context.Context) error { return nil })
	fmt.Println("after Close:", err, partner.State())

	// Output:
	// call: partner unavailable
	// call: partner unavailable
	// partner: closed -> open
	// call: partner unavailable
	// open: true
	// rejected: true
	// calls made: 3
	// partner: open -> closed
	// after Close: <nil> closed
}

// A consumer handler behind an Admission. A message that finds the
// dependency busy is not failed: the handler's error asks for a
// redelivery after the rejection's hint (stretched at random, so that
// rejected messages do not all come back at once) and matches
// consumer.ErrDeferred, so a dead-letter middleware does not count it.
func ExampleMiddleware() {
	ctx := context.Background()
	db, err := backpressure.NewAdmission(backpressure.AdmissionOptions{
		Name:       "db",
		Limit:      1,
		RetryAfter: time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := backpressure.Middleware(db)(consumer.HandlerFunc(
		func(ctx context.Context, msg *consumer.Message) error {
			fmt.Println("handled", msg.ID)
			return nil
		}))

	// Another call holds the only slot.
	if err := db.Acquire(ctx); err != nil {
		fmt.Println(err)
		return
	}
	err = h.Handle(ctx, &consumer.Message{ID: "m1"})
	fmt.Println("deferred:", errors.Is(err, consumer.ErrDeferred))
	fmt.Println("rejected:", errors.Is(err, backpressure.ErrRejected))
	delay, ok := consumer.RetryAfterDelay(err)
	fmt.Println("retry after at least 1s:", ok && delay >= time.Second)

	db.Release()
	fmt.Println("redelivered:", h.Handle(ctx, &consumer.Message{ID: "m1"}))

	// Output:
	// deferred: true
	// rejected: true
	// retry after at least 1s: true
	// handled m1
	// redelivered: <nil>
}

// An HTTP handler behind an Admission answers 503 with a Retry-After
// header, in whole seconds rounded up, while its dependency is busy.
func ExampleHTTPMiddleware() {
	search, err := backpressure.NewAdmission(backpressure.AdmissionOptions{
		Name:       "search",
		Limit:      1,
		RetryAfter: 1500 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mw, err := backpressure.HTTPMiddleware(search, backpressure.HTTPOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	handler := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "results")
	}))
	get := func() {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/search?q=book", nil))
		fmt.Printf("%d Retry-After=%q %s\n", rec.Code, rec.Header().Get("Retry-After"),
			strings.TrimSpace(rec.Body.String()))
	}

	// Another request holds the only slot.
	if err := search.Acquire(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	get()
	search.Release()
	get()

	// Output:
	// 503 Retry-After="2" {"error":"backpressure: search rejected: limit reached (retry after 1.5s)"}
	// 200 Retry-After="" results
}

// Five callers ask for the same exchange rate while its fetch is in
// flight: the fetch runs once and all five get its result. Exactly one
// caller, the one that started the fetch, sees shared false.
func ExampleCoalescer() {
	var rates backpressure.Coalescer[string]
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context) (string, error) {
		fetches.Add(1)
		<-release // a slow upstream call
		return "1.08", nil
	}

	const callers = 5
	waiting := make(chan struct{}, callers)
	var mu sync.Mutex
	results := map[string]int{}
	started := 0
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := &waitReporter{Context: context.Background(), waiting: waiting}
			v, shared, err := rates.Do(ctx, "EUR/USD", fetch)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				v = err.Error()
			}
			results[v]++
			if !shared {
				started++
			}
		}()
	}
	// Let the fetch finish only once every caller waits for it, so that
	// the output does not depend on scheduling. Real callers just call Do.
	for range callers {
		<-waiting
	}
	close(release)
	wg.Wait()

	fmt.Println("fetches:", fetches.Load())
	fmt.Println("results:", results)
	fmt.Println("callers that started the fetch:", started)

	// Output:
	// fetches: 1
	// results: map[1.08:5]
	// callers that started the fetch: 1
}

// waitReporter is a context that reports on waiting the first time a
// caller waits for it to be done; Coalescer.Do does that once the caller
// has started or joined the call for its key.
type waitReporter struct {
	context.Context
	once    sync.Once
	waiting chan<- struct{}
}

func (c *waitReporter) Done() <-chan struct{} {
	c.once.Do(func() { c.waiting <- struct{}{} })
	return c.Context.Done()
}

// A rate limiter that admits a burst of two calls and then one a minute.
// With MaxWait zero it never holds a caller: the third call is rejected at
// once, with the time until a token is free as its hint.
func ExampleRateLimiter() {
	ctx := context.Background()
	sms, err := backpressure.NewRateLimiter(backpressure.RateOptions{
		Name:  "sms",
		Rate:  rate.Every(time.Minute),
		Burst: 2,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := 1; i <= 3; i++ {
		err := sms.Wait(ctx)
		if err == nil {
			fmt.Printf("call %d: admitted\n", i)
			continue
		}
		d, _ := backpressure.RetryAfterHint(err)
		fmt.Printf("call %d: rejected=%t deferred=%t retry after > 0: %t\n", i,
			errors.Is(err, backpressure.ErrRejected), errors.Is(err, consumer.ErrDeferred), d > 0)
	}

	// Output:
	// call 1: admitted
	// call 2: admitted
	// call 3: rejected=true deferred=true retry after > 0: true
}

// An adaptive limiter halves its limit when a call times out. A second
// timeout from a call admitted before the cut does not cut it again: that
// call saw the same overload. A call admitted after the cut does.
func ExampleAIMD() {
	ctx := context.Background()
	l, err := backpressure.NewAIMD(backpressure.AIMDOptions{
		Name:    "ledger",
		Initial: 10,
		Backoff: 0.5,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("limit:", l.Limit())

	p1, err1 := l.Acquire(ctx)
	p2, err2 := l.Acquire(ctx)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Println(err)
		return
	}
	l.Release(p1, context.DeadlineExceeded)
	fmt.Println("after a timeout:", l.Limit())
	l.Release(p2, context.DeadlineExceeded)
	fmt.Println("after a timeout admitted before the cut:", l.Limit())

	p3, err := l.Acquire(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	l.Release(p3, fmt.Errorf("ledger answered 503: %w", backpressure.ErrOverload))
	fmt.Println("after an overload admitted after the cut:", l.Limit())

	// Output:
	// limit: 10
	// after a timeout: 5
	// after a timeout admitted before the cut: 5
	// after an overload admitted after the cut: 2
}
