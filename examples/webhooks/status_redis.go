package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStatus is a statusStore in Redis, for -queue redis: one hash per
// event, "<prefix><event ID>", that expires after the dedupe window (a
// status is kept as long as its ID is deduplicated). Every change is one
// script on one key, and timestamps come from the server's clock (TIME).
type redisStatus struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

var _ statusStore = (*redisStatus)(nil)

// nowMicros sets the local now to the server's time in microseconds since
// the epoch, as a string: Lua numbers are doubles, so it is concatenated
// rather than computed.
const nowMicros = `
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
`

// KEYS[1] record; ARGV id, source, ttl in ms. Returns 1 if it created the
// record.
var acceptScript = redis.NewScript(nowMicros + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'source', ARGV[2], 'status', 'processing',
  'attempts', 0, 'deliveries', 0, 'error', '', 'received_at', now, 'updated_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// KEYS[1] record; ARGV id, source, ttl in ms, delivery.
var attemptScript = redis.NewScript(nowMicros + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'source', ARGV[2],
    'attempts', 0, 'deliveries', 0, 'error', '', 'received_at', now)
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'deliveries') or '0') then
  redis.call('HSET', KEYS[1], 'deliveries', ARGV[4])
end
redis.call('HSET', KEYS[1], 'status', 'processing', 'reason', '', 'dlq_entry', '', 'updated_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// KEYS[1] record; ARGV ttl in ms, then field, value pairs. Changes an
// existing record only.
var setScript = redis.NewScript(nowMicros + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'updated_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

func (s *redisStatus) key(id string) string { return s.prefix + id }
func (s *redisStatus) ttlMillis() int64     { return max(s.ttl.Milliseconds(), 1) }

func (s *redisStatus) Accept(ctx context.Context, id, source string) (bool, error) {
	n, err := acceptScript.Run(ctx, s.client, []string{s.key(id)}, id, source, s.ttlMillis()).Int()
	if err != nil {
		return false, fmt.Errorf("status of %q: accept: %w", id, err)
	}
	return n == 1, nil
}

func (s *redisStatus) Attempt(ctx context.Context, id, source string, delivery int) error {
	if err := attemptScript.Run(ctx, s.client, []string{s.key(id)}, id, source, s.ttlMillis(), delivery).Err(); err != nil {
		return fmt.Errorf("status of %q: attempt: %w", id, err)
	}
	return nil
}

func (s *redisStatus) set(ctx context.Context, op, id string, fields ...any) error {
	args := append([]any{s.ttlMillis()}, fields...)
	if err := setScript.Run(ctx, s.client, []string{s.key(id)}, args...).Err(); err != nil {
		return fmt.Errorf("status of %q: %s: %w", id, op, err)
	}
	return nil
}

func (s *redisStatus) Retrying(ctx context.Context, id, errText string) error {
	return s.set(ctx, "retrying", id, "error", errText)
}

func (s *redisStatus) Done(ctx context.Context, id string) error {
	return s.set(ctx, "done", id, "status", statusDone, "error", "")
}

func (s *redisStatus) Failed(ctx context.Context, id, reason, errText, dlqEntry string) error {
	return s.set(ctx, "failed", id, "status", statusFailed, "reason", reason, "error", errText, "dlq_entry", dlqEntry)
}

func (s *redisStatus) Get(ctx context.Context, id string) (eventStatus, error) {
	h, err := s.client.HGetAll(ctx, s.key(id)).Result()
	if err != nil {
		return eventStatus{}, fmt.Errorf("status of %q: get: %w", id, err)
	}
	if len(h) == 0 {
		return eventStatus{}, errUnknownEvent
	}
	st := eventStatus{
		ID: h["id"], Source: h["source"], Status: h["status"],
		Error: h["error"], Reason: h["reason"], DLQEntry: h["dlq_entry"],
	}
	ints := []struct {
		field string
		to    *int
	}{{"attempts", &st.Attempts}, {"deliveries", &st.Deliveries}}
	for _, f := range ints {
		if *f.to, err = strconv.Atoi(h[f.field]); err != nil {
			return eventStatus{}, fmt.Errorf("status of %q: field %s: %w", id, f.field, err)
		}
	}
	times := []struct {
		field string
		to    *time.Time
	}{{"received_at", &st.ReceivedAt}, {"updated_at", &st.UpdatedAt}}
	for _, f := range times {
		us, err := strconv.ParseInt(h[f.field], 10, 64)
		if err != nil {
			return eventStatus{}, fmt.Errorf("status of %q: field %s: %w", id, f.field, err)
		}
		*f.to = time.UnixMicro(us).UTC()
	}
	return st, nil
}

func (s *redisStatus) Delete(ctx context.Context, id string) error {
	if err := s.client.Del(ctx, s.key(id)).Err(); err != nil {
		return fmt.Errorf("status of %q: delete: %w", id, err)
	}
	return nil
}
