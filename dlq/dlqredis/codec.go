package dlqredis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemq/idemq/dlq"
)

// Entry layout, one hash per entry at <prefix>{<name>}:e:<id>:
//
//	v     format version, "1"
//	mid   Message.ID
//	mkey  Message.Key
//	body  Message.Body, raw bytes; absent for a nil body
//	hdr   Message.Headers as length-prefixed strings (name, value, ...,
//	      sorted by name); absent for nil headers
//	att   Message.Attempt, decimal
//	enq   Message.EnqueuedAt as "<Unix seconds>.<nine digits of ns>";
//	      absent when zero
//	src   Source
//	rsn   Reason
//	err   Error
//	chn   ErrorChain as length-prefixed strings; absent for a nil chain
//	n     Attempts, decimal
//	ff    FirstFailedAt, Unix microseconds; absent when zero (unknown)
//	lf    LastFailedAt, Unix microseconds: the entry's score in the index
//	rt    reservation token, while a Replay holds the entry
//	rx    reservation deadline, Unix microseconds of the server's clock
//
// Every value is a Redis string, which holds any bytes, so text and bodies
// come back exactly as given; presence tells nil from empty. The fields the
// scripts read (src, rsn, ff, lf, rt, rx) are plain so the scripts need no
// decoder, and an operator can read an entry with HGETALL.
const formatVersion = "1"

// Field names, shared by the encoder, the decoder and the scripts.
const (
	fVersion  = "v"
	fMsgID    = "mid"
	fMsgKey   = "mkey"
	fBody     = "body"
	fHeaders  = "hdr"
	fAttempt  = "att"
	fEnqueued = "enq"
	fSource   = "src"
	fReason   = "rsn"
	fError    = "err"
	fChain    = "chn"
	fAttempts = "n"
	fFirst    = "ff"
	fLast     = "lf"
)

// micro returns t in whole microseconds since the Unix epoch, rounded
// down: the resolution at which the store keeps failure times, as
// PostgreSQL does.
func micro(t time.Time) int64 { return t.UnixMicro() }

// ceilMicro returns the first whole microsecond at or after t, so that for
// a stored time us, us >= ceilMicro(t) exactly when the time is not
// before t.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// fromMicro is the inverse of micro, in UTC.
func fromMicro(us int64) time.Time { return time.UnixMicro(us).UTC() }

// encodeFields returns the entry's fields and values, in HSET order, but
// for ff and lf, which the Put script sets itself.
func encodeFields(e dlq.Entry) []any {
	m := e.Message
	args := []any{
		fVersion, formatVersion,
		fMsgID, m.ID,
		fMsgKey, m.Key,
		fAttempt, strconv.Itoa(m.Attempt),
		fSource, e.Source,
		fReason, string(e.Reason),
		fError, e.Error,
		fAttempts, strconv.Itoa(e.Attempts),
	}
	if m.Body != nil {
		args = append(args, fBody, m.Body)
	}
	if m.Headers != nil {
		keys := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b []byte
		for _, k := range keys {
			b = appendString(b, k)
			b = appendString(b, m.Headers[k])
		}
		args = append(args, fHeaders, b)
	}
	if !m.EnqueuedAt.IsZero() {
		args = append(args, fEnqueued, fmt.Sprintf("%d.%09d", m.EnqueuedAt.Unix(), m.EnqueuedAt.Nanosecond()))
	}
	if e.ErrorChain != nil {
		var b []byte
		for _, s := range e.ErrorChain {
			b = appendString(b, s)
		}
		args = append(args, fChain, b)
	}
	return args
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeStrings splits a value written by appendString calls.
func decodeStrings(v string) ([]string, error) {
	out := []string{}
	for len(v) > 0 {
		n, w := binary.Uvarint([]byte(v[:min(len(v), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(v)-w) {
			return nil, errors.New("truncated string list")
		}
		out = append(out, v[w:w+int(n)])
		v = v[w+int(n):]
	}
	return out, nil
}

// decodeEntry rebuilds the entry id from its hash fields.
func decodeEntry(id string, f map[string]string) (dlq.Entry, error) {
	e, err := decodeFields(id, f)
	if err != nil {
		return dlq.Entry{}, fmt.Errorf("dlqredis: entry %q: %w", id, err)
	}
	return e, nil
}

func decodeFields(id string, f map[string]string) (dlq.Entry, error) {
	if v := f[fVersion]; v != formatVersion {
		return dlq.Entry{}, fmt.Errorf("unknown format version %q", v)
	}
	e := dlq.Entry{
		ID:     id,
		Source: f[fSource],
		Reason: dlq.Reason(f[fReason]),
		Error:  f[fError],
	}
	e.Message.ID = f[fMsgID]
	e.Message.Key = f[fMsgKey]
	var err error
	if e.Message.Attempt, err = strconv.Atoi(f[fAttempt]); err != nil {
		return dlq.Entry{}, fmt.Errorf("field %s: %w", fAttempt, err)
	}
	if e.Attempts, err = strconv.Atoi(f[fAttempts]); err != nil {
		return dlq.Entry{}, fmt.Errorf("field %s: %w", fAttempts, err)
	}
	if v, ok := f[fBody]; ok {
		e.Message.Body = []byte(v)
	}
	if v, ok := f[fHeaders]; ok {
		kv, err := decodeStrings(v)
		if err != nil || len(kv)%2 != 0 {
			return dlq.Entry{}, fmt.Errorf("field %s: malformed", fHeaders)
		}
		e.Message.Headers = make(map[string]string, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			e.Message.Headers[kv[i]] = kv[i+1]
		}
	}
	if v, ok := f[fEnqueued]; ok {
		sec, ns, found := strings.Cut(v, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		n, err2 := strconv.ParseInt(ns, 10, 64)
		if !found || len(ns) != 9 || err1 != nil || err2 != nil || n < 0 {
			return dlq.Entry{}, fmt.Errorf("field %s: malformed %q", fEnqueued, v)
		}
		e.Message.EnqueuedAt = time.Unix(s, n).UTC()
	}
	if v, ok := f[fChain]; ok {
		if e.ErrorChain, err = decodeStrings(v); err != nil {
			return dlq.Entry{}, fmt.Errorf("field %s: %w", fChain, err)
		}
	}
	if v, ok := f[fFirst]; ok {
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return dlq.Entry{}, fmt.Errorf("field %s: %w", fFirst, err)
		}
		e.FirstFailedAt = fromMicro(us)
	}
	us, err := strconv.ParseInt(f[fLast], 10, 64)
	if err != nil {
		return dlq.Entry{}, fmt.Errorf("field %s: %w", fLast, err)
	}
	e.LastFailedAt = fromMicro(us)
	return e, nil
}

// pairsToMap turns a flat field/value reply (HGETALL inside a script) into
// a map.
func pairsToMap(v []any) (map[string]string, error) {
	if len(v)%2 != 0 {
		return nil, fmt.Errorf("odd field list of %d items", len(v))
	}
	m := make(map[string]string, len(v)/2)
	for i := 0; i < len(v); i += 2 {
		k, ok1 := v[i].(string)
		val, ok2 := v[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("field list item of type %T, %T", v[i], v[i+1])
		}
		m[k] = val
	}
	return m, nil
}
