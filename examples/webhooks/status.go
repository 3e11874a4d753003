package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// An event's status, as GET /webhooks/events/{id} reports it.
const (
	statusProcessing = "processing" // accepted and queued, or being handled, or waiting for a redelivery
	statusDone       = "done"       // the handler succeeded
	statusFailed     = "failed"     // parked in the dead-letter queue
)

// errUnknownEvent reports an event ID the status store has never seen.
var errUnknownEvent = errors.New("webhooks: unknown event")

// eventStatus is one event's record, and the body of its status URL.
type eventStatus struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Status string `json:"status"`
	// Attempts counts handler calls, in-process retries included;
	// Deliveries counts deliveries by the queue, which is what the
	// dead-letter queue's MaxAttempts bounds.
	Attempts   int `json:"attempts"`
	Deliveries int `json:"deliveries"`
	// Error is the last failure: the one being retried while processing,
	// the one that parked the event when failed, empty once done.
	Error string `json:"error"`
	// Reason and DLQEntry say why a failed event was parked and under
	// which dead-letter entry (for dlqctl show and replay).
	Reason     string    `json:"reason,omitempty"`
	DLQEntry   string    `json:"dlq_entry,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func (s eventStatus) settled() bool { return s.Status == statusDone || s.Status == statusFailed }

// statusStore keeps each event's status. Each method is one atomic step in
// the store. The last write wins: the receipt claim and the consumer's
// idempotency middleware, not the status store, decide what runs, and they
// never run one event's steps concurrently.
type statusStore interface {
	// Accept records a new event as processing, with no attempts, unless
	// the ID is known already; it reports whether it created the record.
	Accept(ctx context.Context, id, source string) (created bool, err error)

	// Attempt counts one handler call of delivery number delivery and sets
	// the status to processing (a replayed dead letter runs again). It
	// creates the record if it is missing.
	Attempt(ctx context.Context, id, source string, delivery int) error

	// Retrying records the failure of a call that will be tried again, or
	// parked; the status stays processing.
	Retrying(ctx context.Context, id, errText string) error

	// Done marks the event done and clears its error.
	Done(ctx context.Context, id string) error

	// Failed marks the event failed, with the reason and error it was
	// parked for and its dead-letter entry.
	Failed(ctx context.Context, id, reason, errText, dlqEntry string) error

	// Get returns the event's status, or errUnknownEvent.
	Get(ctx context.Context, id string) (eventStatus, error)

	// Delete forgets the event, for a receipt whose publish failed.
	Delete(ctx context.Context, id string) error
}

// memStatus is a statusStore in process memory, for -queue memory. It
// keeps every record until the process exits.
type memStatus struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*eventStatus
}

var _ statusStore = (*memStatus)(nil)

func newMemStatus() *memStatus {
	return &memStatus{now: time.Now, m: map[string]*eventStatus{}}
}

func (s *memStatus) Accept(ctx context.Context, id, source string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return false, nil
	}
	now := s.now()
	s.m[id] = &eventStatus{ID: id, Source: source, Status: statusProcessing, ReceivedAt: now, UpdatedAt: now}
	return true, nil
}

func (s *memStatus) Attempt(ctx context.Context, id, source string, delivery int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, ok := s.m[id]
	if !ok {
		st = &eventStatus{ID: id, Source: source, ReceivedAt: now}
		s.m[id] = st
	}
	st.Status = statusProcessing
	st.Attempts++
	st.Deliveries = max(st.Deliveries, delivery)
	st.Reason, st.DLQEntry = "", ""
	st.UpdatedAt = now
	return nil
}

// update applies f to id's record, if there is one.
func (s *memStatus) update(ctx context.Context, id string, f func(st *eventStatus)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[id]; ok {
		f(st)
		st.UpdatedAt = s.now()
	}
	return nil
}

func (s *memStatus) Retrying(ctx context.Context, id, errText string) error {
	return s.update(ctx, id, func(st *eventStatus) { st.Error = errText })
}

func (s *memStatus) Done(ctx context.Context, id string) error {
	return s.update(ctx, id, func(st *eventStatus) { st.Status, st.Error = statusDone, "" })
}

func (s *memStatus) Failed(ctx context.Context, id, reason, errText, dlqEntry string) error {
	return s.update(ctx, id, func(st *eventStatus) {
		st.Status, st.Reason, st.Error, st.DLQEntry = statusFailed, reason, errText, dlqEntry
	})
}

func (s *memStatus) Get(ctx context.Context, id string) (eventStatus, error) {
	if err := ctx.Err(); err != nil {
		return eventStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[id]
	if !ok {
		return eventStatus{}, errUnknownEvent
	}
	return *st, nil
}

func (s *memStatus) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}
