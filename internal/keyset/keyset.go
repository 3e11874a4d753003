// Package keyset encodes the cursors of listings paged by keyset: the
// position after an entry, as its sort time and its ID.
//
// A cursor is a version byte, the time as a big-endian int64 in whatever
// unit the store sorts by, and the ID's bytes, in unpadded URL-safe base64
// so that it can go in a URL query as it is. Callers treat it as opaque.
package keyset

import (
	"encoding/base64"
	"encoding/binary"
)

const version = 1

// Encode returns the cursor of the position after an entry sorted at t
// (in the store's unit) with the given ID.
func Encode(t int64, id string) string {
	b := make([]byte, 0, 9+len(id))
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = append(b, id...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode returns the position a cursor encodes. ok is false unless c is
// exactly what Encode makes of some position: the decoder of the standard
// library would also take line breaks and stray low bits in the last
// character, and those are refused, so that each position has one cursor.
func Decode(c string) (t int64, id string, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 9 || b[0] != version {
		return 0, "", false
	}
	t, id = int64(binary.BigEndian.Uint64(b[1:9])), string(b[9:])
	if Encode(t, id) != c {
		return 0, "", false
	}
	return t, id, true
}
