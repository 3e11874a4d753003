package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
)

const (
	// headerEventID carries the event ID, as in the Standard Webhooks
	// spec; without it the ID is the body's "id".
	headerEventID = "Webhook-Id"

	maxBodyBytes = 1 << 20
	maxIDLen     = 200 // so that "process:<id>" fits idempotency's MaxKeyLen
	maxSourceLen = 64

	// receiptLease bounds how long a receipt claim blocks its ID if the
	// process dies while enqueueing; enqueueTimeout, well under it, bounds
	// the enqueueing itself, so a live claim is never overtaken.
	receiptLease   = 10 * time.Second
	enqueueTimeout = 5 * time.Second

	// inProgressWait is how long a POST waits for a concurrent POST of the
	// same event to finish enqueueing, before answering 409 and asking the
	// sender to retry.
	inProgressWait = 2 * time.Second
)

// errAcceptInProgress reports that another request holds the event's
// receipt claim and did not finish in time.
var errAcceptInProgress = errors.New("another delivery of this event is being accepted")

// routes is the inbox's HTTP API.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/{source}", a.receive)
	mux.HandleFunc("GET /webhooks/events/{id}", a.getStatus)
	return mux
}

// statusURL is the path of the event's status.
func statusURL(id string) string { return "/webhooks/events/" + url.PathEscape(id) }

// accepted is the body of a 202.
type accepted struct {
	ID        string `json:"id"`
	StatusURL string `json:"status_url"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func (a *app) receive(w http.ResponseWriter, r *http.Request) {
	source := r.PathValue("source")
	if !validSource(source) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("source %q: want 1 to %d letters, digits, '.', '_' or '-'", source, maxSourceLen))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	id, err := eventID(r.Header, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	dup, err := a.accept(r.Context(), id, source, body)
	switch {
	case errors.Is(err, idempotency.ErrFingerprintMismatch):
		writeError(w, http.StatusConflict, fmt.Sprintf("event %q was received before with a different payload", id))
		return
	case errors.Is(err, errAcceptInProgress):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusConflict, fmt.Sprintf("event %q: %v; retry", id, err))
		return
	case err != nil:
		a.log.LogAttrs(r.Context(), slog.LevelError, "webhooks: could not queue an event",
			slog.String("event_id", id), slog.String("source", source), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("event %q was not queued; retry", id))
		return
	}
	u := statusURL(id)
	w.Header().Set("Location", u)
	if dup {
		w.Header().Set(idempotency.HTTPReplayedHeader, "true")
	}
	writeJSON(w, http.StatusAccepted, accepted{ID: id, StatusURL: u, Duplicate: dup})
}

// accept queues the event once per ID and reports whether it was a
// duplicate. The ID is claimed in the idempotency store first, atomically;
// only the claim's holder records the status and publishes, and it
// completes the claim once the message is published. Later POSTs of the
// ID find the claim completed and publish nothing. When the claim's holder
// fails, it releases the claim, and the sender's retry starts over.
func (a *app) accept(ctx context.Context, id, source string, body []byte) (dup bool, err error) {
	key := "receipt:" + id
	fp := fingerprint(source, body)
	deadline := time.Now().Add(a.acceptWait)
	for {
		c, err := a.idem.Claim(ctx, key, fp, receiptLease)
		if err != nil {
			return false, err
		}
		switch c.Status {
		case idempotency.Completed:
			return true, nil
		case idempotency.Claimed:
			return false, a.enqueue(ctx, key, c.Token, id, source, body)
		case idempotency.InProgress:
			// A concurrent POST of the same event (a sender that timed out
			// and retried) holds the claim: it usually finishes in
			// milliseconds, so wait for it and then answer as a duplicate.
			wait := min(c.RetryAfter, 20*time.Millisecond, time.Until(deadline))
			if wait <= 0 {
				return false, errAcceptInProgress
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			}
		default:
			return false, fmt.Errorf("receipt claim of %q: unexpected status %v", id, c.Status)
		}
	}
}

// enqueue records the event and publishes it, under the receipt claim
// (key, token). It runs to the end even if the sender hangs up, so that
// the claim is completed or released, not left to lapse.
func (a *app) enqueue(ctx context.Context, key string, token int64, id, source string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	// The status goes first: once published, the consumer may finish the
	// event at once, and a later "processing" would hide its outcome.
	created, err := a.status.Accept(ctx, id, source)
	if err == nil {
		err = a.pub.Publish(ctx, consumer.Message{
			ID:      id,
			Body:    body,
			Headers: map[string]string{msgHeaderSource: source},
		})
		if err != nil && created {
			if derr := a.status.Delete(ctx, id); derr != nil {
				a.log.LogAttrs(ctx, slog.LevelWarn, "webhooks: removing the status of an event that was not queued",
					slog.String("event_id", id), slog.Any("error", derr))
			}
		}
	}
	if err != nil {
		if rerr := a.idem.Release(ctx, key, token); rerr != nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "webhooks: releasing a receipt claim; the event ID stays blocked until its lease runs out",
				slog.String("event_id", id), slog.Any("error", rerr))
		}
		return err
	}
	if err := a.idem.Complete(ctx, key, token, nil, a.cfg.dedupeWindow); err != nil {
		// The event is queued, so the sender gets its 202. A POST of it
		// again would publish it again; the consumer's idempotency
		// middleware would then skip the second message.
		a.log.LogAttrs(ctx, slog.LevelWarn, "webhooks: event queued but its receipt not recorded",
			slog.String("event_id", id), slog.Any("error", err))
	}
	return nil
}

// fingerprint tells a re-sent event from a different event under the
// same ID: a hash of the source and the body.
func fingerprint(source string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// eventID returns the Webhook-Id header or, without one, the body's "id"
// (a string or a number).
func eventID(h http.Header, body []byte) (string, error) {
	id := h.Get(headerEventID)
	if id == "" {
		var p struct {
			ID any `json:"id"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&p) == nil {
			switch v := p.ID.(type) {
			case string:
				id = v
			case json.Number:
				id = v.String()
			}
		}
	}
	switch {
	case id == "":
		return "", fmt.Errorf("no event ID: send a %s header or a JSON body with an \"id\"", headerEventID)
	case len(id) > maxIDLen:
		return "", fmt.Errorf("event ID of %d bytes, limit %d", len(id), maxIDLen)
	case !utf8.ValidString(id):
		return "", errors.New("event ID is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("event ID %q contains a control character", id)
		}
	}
	return id, nil
}

func validSource(s string) bool {
	if s == "" || len(s) > maxSourceLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (a *app) getStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := a.status.Get(r.Context(), id)
	if errors.Is(err, errUnknownEvent) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown event %q", id))
		return
	}
	if err != nil {
		a.log.LogAttrs(r.Context(), slog.LevelError, "webhooks: reading a status", slog.String("event_id", id), slog.Any("error", err))
		writeError(w, http.StatusServiceUnavailable, "status unavailable; retry")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
