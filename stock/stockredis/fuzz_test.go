package stockredis

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/stock"
)

// fuzzEncodeCodes writes codes as the confirm script does: each as
// "<length>:<bytes>", one after another.
func fuzzEncodeCodes(codes []string) string {
	var b strings.Builder
	for _, c := range codes {
		b.WriteString(strconv.Itoa(len(c)))
		b.WriteByte(':')
		b.WriteString(c)
	}
	return b.String()
}

// FuzzDecodeCodes checks that decodeCodes gives back a list written in
// the record's code layout, and that on any other input it either fails
// or returns codes whose encoding is exactly that input.
func FuzzDecodeCodes(f *testing.F) {
	// Each seed is a list, as its codes joined by sep, and a raw string.
	f.Add("A-1|12:x|3:ab|{brace}|\x00\xff| ", byte('|'), "3:A-14:12:x")
	f.Add("", byte(0), "")
	f.Add("a", byte(','), "0:")
	f.Add(",,", byte(','), "1:a0:2:bc")
	f.Add("c00001\nc00002", byte('\n'), "2:a")
	f.Add("\xff\xfe", byte(0), "-1:")
	f.Add("9:", byte(':'), "9223372036854775808:x")
	f.Add("long code "+strings.Repeat("z", 300), byte(' '), ":")
	f.Add("x", byte('x'), "1:")
	f.Add("日本:語", byte(':'), "6:日本")
	f.Fuzz(func(t *testing.T, joined string, sep byte, raw string) {
		codes := strings.Split(joined, string([]byte{sep}))
		if joined == "" {
			codes = nil
		}
		enc := fuzzEncodeCodes(codes)
		got, err := decodeCodes(enc)
		require.NoError(t, err, "encoding %q", enc)
		require.Len(t, got, len(codes), "encoding %q", enc)
		for i := range codes {
			require.Equal(t, codes[i], got[i], "code %d of encoding %q", i, enc)
		}

		got, err = decodeCodes(raw)
		if err != nil {
			require.Nil(t, got)
			return
		}
		total := 0
		for _, c := range got {
			total += len(c)
		}
		require.LessOrEqual(t, total+2*len(got), len(raw), "codes longer than their encoding %q", raw)
		again, err := decodeCodes(fuzzEncodeCodes(got))
		require.NoError(t, err)
		require.Equal(t, len(got), len(again))
		require.Equal(t, raw, fuzzEncodeCodes(got), "decodeCodes(%q) = %q, which encodes differently", raw, got)
	})
}

// FuzzParseReservation builds script replies from the fuzz arguments,
// some of them with a wrong length or wrongly typed elements, and checks
// that parseReservation accepts exactly the well-formed ones and copies
// their fields unchanged.
func FuzzParseReservation(f *testing.F) {
	f.Add("ann", "4", "held", "1748779200000", "", uint8(6), uint8(0))
	f.Add("ann", "4", "confirmed", "1748779200000", "3:A-14:12:x4:3:ab7:{brace}", uint8(6), uint8(0))
	f.Add("", "0", "released", "0", "", uint8(6), uint8(0))
	f.Add("bob", "-1", "expired", "-1", "0:", uint8(6), uint8(0))
	f.Add("h", "9223372036854775807", "held", "9223372036854775807", "", uint8(6), uint8(0))
	f.Add("h", "9223372036854775808", "held", "-9223372036854775808", "", uint8(6), uint8(0))
	f.Add("h", "1", "held", "1", "5:ab", uint8(6), uint8(0))
	f.Add("h", "1e3", "held", "0x10", "", uint8(6), uint8(0))
	f.Add("\xff\x00", " 1", "", "", "-1:", uint8(6), uint8(0))
	f.Add("ann", "4", "held", "1", "", uint8(5), uint8(0))
	f.Add("ann", "4", "held", "1", "", uint8(7), uint8(0))
	f.Add("ann", "4", "held", "1", "", uint8(0), uint8(0))
	f.Add("ann", "4", "held", "1", "", uint8(6), uint8(0b10))
	f.Add("ann", "4", "held", "1", "", uint8(6), uint8(0b100000))
	f.Fuzz(func(t *testing.T, holder, qty, state, exp, codes string, n, wrongType uint8) {
		v := []any{int64(1), holder, qty, state, exp, codes}
		typed := true
		for i := 1; i < len(v); i++ {
			if wrongType&(1<<i) != 0 {
				// go-redis gives integers, nils and nested arrays too.
				switch wrongType >> 6 {
				case 0:
					v[i] = int64(len(v[i].(string)))
				case 1:
					v[i] = nil
				case 2:
					v[i] = []any{v[i]}
				default:
					v[i] = []byte(v[i].(string))
				}
				typed = false
			}
		}
		if size := int(n % 9); size < len(v) {
			v = v[:size]
		} else {
			for len(v) < size {
				v = append(v, "")
			}
		}

		r, err := parseReservation("r1", "gift", v)

		wantQty, qtyErr := strconv.Atoi(qty)
		wantExp, expErr := strconv.ParseInt(exp, 10, 64)
		var wantCodes []string
		var codesErr error
		if codes != "" {
			wantCodes, codesErr = decodeCodes(codes)
		}
		ok := len(v) == 6 && typed && qtyErr == nil && expErr == nil && codesErr == nil
		if !ok {
			require.Error(t, err, "reply %#v", v)
			require.Zero(t, r)
			require.ErrorContains(t, err, `reservation "r1"`)
			return
		}
		require.NoError(t, err, "reply %#v", v)
		require.Equal(t, stock.Reservation{
			ID:        "r1",
			Item:      "gift",
			Holder:    holder,
			Quantity:  wantQty,
			State:     stock.State(state),
			ExpiresAt: time.UnixMilli(wantExp),
			Codes:     wantCodes,
		}, r)
		if wantExp > math.MinInt64/2 && wantExp < math.MaxInt64/2 {
			require.Equal(t, wantExp, r.ExpiresAt.UnixMilli(), "expiry %q", exp)
		}
	})
}
