// Package backpressure will keep bursts from overwhelming slow
// dependencies, and tell callers when to come back.
//
// It will hold semaphore admission per dependency, token-bucket shaping, an
// AIMD adaptive concurrency limiter, a circuit breaker, coalescing of
// concurrent calls, and consumer and net/http middleware that turn a
// rejection into a delayed redelivery or a 429/503 with Retry-After.
package backpressure
