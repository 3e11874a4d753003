package idempotencyredis

import (
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
)

// fuzzReplyElem makes one element of a script reply of a type go-redis
// can return: kind picks it, i and s give its value.
func fuzzReplyElem(kind uint8, i int64, s string) any {
	switch kind % 5 {
	case 0:
		return i
	case 1:
		return s
	case 2:
		return nil
	case 3:
		return []any{i}
	default:
		return errors.New(s)
	}
}

// FuzzParseClaim builds claim script replies from the fuzz arguments and
// checks that parseClaim reads the four documented replies, {0},
// {1, token}, {2, result} and {3, pttl}, as their claims and refuses any
// other reply with an error other than ErrFingerprintMismatch.
func FuzzParseClaim(f *testing.F) {
	f.Add(uint8(2), uint8(0), int64(1), uint8(1), int64(0), "1748779200000000001")
	f.Add(uint8(2), uint8(0), int64(1), uint8(1), int64(0), "-9223372036854775808")
	f.Add(uint8(2), uint8(0), int64(1), uint8(1), int64(0), "9223372036854775808")
	f.Add(uint8(2), uint8(0), int64(1), uint8(1), int64(0), "")
	f.Add(uint8(2), uint8(0), int64(1), uint8(1), int64(0), " 12")
	f.Add(uint8(2), uint8(0), int64(2), uint8(1), int64(0), "ok")
	f.Add(uint8(2), uint8(0), int64(2), uint8(1), int64(0), "")
	f.Add(uint8(2), uint8(0), int64(2), uint8(1), int64(0), "\x00\xff")
	f.Add(uint8(2), uint8(0), int64(2), uint8(0), int64(7), "")
	f.Add(uint8(2), uint8(0), int64(3), uint8(0), int64(60000), "")
	f.Add(uint8(2), uint8(0), int64(3), uint8(0), int64(0), "")
	f.Add(uint8(2), uint8(0), int64(3), uint8(0), int64(-2), "")
	f.Add(uint8(2), uint8(0), int64(3), uint8(0), int64(math.MaxInt64/int64(time.Millisecond)), "")
	f.Add(uint8(1), uint8(0), int64(0), uint8(0), int64(0), "")
	f.Add(uint8(2), uint8(0), int64(0), uint8(0), int64(0), "")
	f.Add(uint8(1), uint8(0), int64(4), uint8(0), int64(0), "")
	f.Add(uint8(0), uint8(0), int64(0), uint8(0), int64(0), "")
	f.Add(uint8(3), uint8(0), int64(1), uint8(1), int64(0), "5")
	f.Add(uint8(2), uint8(0), int64(-1), uint8(1), int64(0), "5")
	f.Fuzz(func(t *testing.T, n, kind0 uint8, i0 int64, kind1 uint8, i1 int64, s string) {
		v := []any{fuzzReplyElem(kind0, i0, s), fuzzReplyElem(kind1, i1, s), fuzzReplyElem(kind1, i1, s)}
		v = v[:n%4]

		c, err := parseClaim(v)

		status, isInt := any(nil), false
		if len(v) > 0 {
			status = v[0]
			_, isInt = status.(int64)
		}
		var arg any
		if len(v) == 2 {
			arg = v[1]
		}
		switch {
		case isInt && status == int64(0) && len(v) == 1:
			require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)
			require.Zero(t, c)
			return
		case isInt && status == int64(1) && len(v) == 2:
			str, ok := arg.(string)
			tok, perr := strconv.ParseInt(str, 10, 64)
			if ok && perr == nil {
				require.NoError(t, err, "reply %#v", v)
				require.Equal(t, idempotency.Claim{Status: idempotency.Claimed, Token: tok}, c)
				return
			}
		case isInt && status == int64(2) && len(v) == 2:
			if res, ok := arg.(string); ok {
				require.NoError(t, err, "reply %#v", v)
				require.Equal(t, idempotency.Completed, c.Status)
				require.Equal(t, []byte(res), c.Result)
				require.Zero(t, c.Token)
				require.Zero(t, c.RetryAfter)
				return
			}
		case isInt && status == int64(3) && len(v) == 2:
			if pttl, ok := arg.(int64); ok {
				require.NoError(t, err, "reply %#v", v)
				require.Equal(t, idempotency.InProgress, c.Status)
				const maxMs = math.MaxInt64 / int64(time.Millisecond)
				switch {
				case pttl <= 0:
					require.Equal(t, time.Millisecond, c.RetryAfter, "pttl %d", pttl)
				case pttl <= maxMs:
					require.Equal(t, time.Duration(pttl)*time.Millisecond, c.RetryAfter, "pttl %d", pttl)
				default:
					require.GreaterOrEqual(t, c.RetryAfter, time.Duration(maxMs)*time.Millisecond,
						"pttl %d ms: the wait must not be shorter than the longest Duration", pttl)
				}
				return
			}
		}
		require.Error(t, err, "reply %#v", v)
		require.NotErrorIs(t, err, idempotency.ErrFingerprintMismatch, "reply %#v", v)
		require.Zero(t, c)
	})
}
