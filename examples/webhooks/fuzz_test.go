package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// fuzzJSONValue decodes b, which must be valid JSON, keeping numbers as
// written, so that two encodings of one value compare equal.
func fuzzJSONValue(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	require.NoError(t, d.Decode(&v), "%q", b)
	return v
}

// fuzzEventBody is the payload of an event as a sender writes it.
func fuzzEventBody(t *testing.T, typ string, data json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data,omitempty"`
	}{typ, data})
	require.NoError(t, err)
	return b
}

// FuzzDecodeEvent checks decodeEvent on arbitrary payloads: it either
// fails, naming the event, or returns an event with a non-empty type and
// the message's ID and source, read from a JSON object, whose type and
// data written out again decode to the same event. Payloads built from
// the fuzz arguments with a non-empty type are always accepted.
func FuzzDecodeEvent(f *testing.F) {
	f.Add("evt_1", "stripe", []byte(`{"type":"invoice.paid","data":{"amount":4200}}`), "invoice.paid", []byte(`{"amount":4200}`))
	f.Add("delivery-77", "github", []byte(`{"id":"delivery-77","type":"push"}`), "push", []byte(nil))
	f.Add("1234567890123", "shopify", []byte(`{"id":1234567890123,"type":"orders/create"}`), "orders/create", []byte(`[1,2.50,-3e400]`))
	f.Add("a/b c?", "", []byte(`{"type":"x"}`), "x", []byte(`null`))
	f.Add("bad-type-int", "stripe", []byte(`{"type":42}`), "t", []byte(`"s"`))
	f.Add("bad-type-empty", "stripe", []byte(`{"type":""}`), "", []byte(`{}`))
	f.Add("", "", []byte(``), "\xff", []byte(`"\u00e9<&>"`))
	f.Add("e", "s", []byte(`null`), "日本", []byte(`{"a":{"b":[true,false,null]}}`))
	f.Add("e", "s", []byte(`[{"type":"x"}]`), "t", []byte(`  1 `))
	f.Add("e", "s", []byte(`"type"`), "t", []byte(`{`))
	f.Add("e", "s", []byte(` {"TYPE":"x","data":  [ 1 ] } `), "t", []byte(`1e999999999`))
	f.Add("e", "s", []byte(`{"type":"a","type":"b","data":1,"data":2}`), "t", []byte(`"\ud800"`))
	f.Add("e", "s", []byte("{\"type\":\"\xff\xfe\",\"data\":\"\xc0\"}"), "t", []byte("\"\xff\""))
	f.Add("e", "s", []byte(`{"type":"x","data":{"amount":4200}`), "t", []byte(`9007199254740993`))
	f.Fuzz(func(t *testing.T, id, source string, body []byte, typ string, data []byte) {
		msg := &consumer.Message{ID: id, Body: body, Headers: map[string]string{msgHeaderSource: source}}
		ev, err := decodeEvent(msg)
		if err != nil {
			require.Zero(t, ev)
			require.ErrorContains(t, err, fmt.Sprintf("event %q: ", id))
		} else {
			require.Equal(t, id, ev.ID)
			require.Equal(t, source, ev.Source)
			require.NotEmpty(t, ev.Type)
			require.True(t, json.Valid(body), "accepted invalid JSON %q", body)
			require.Equal(t, byte('{'), bytes.TrimLeft(body, " \t\r\n")[0], "accepted a payload that is not an object: %q", body)
			if ev.Data != nil {
				require.True(t, json.Valid(ev.Data), "data %q", ev.Data)
			}

			again, err := decodeEvent(&consumer.Message{ID: id, Body: fuzzEventBody(t, ev.Type, ev.Data)})
			require.NoError(t, err)
			require.Equal(t, ev.Type, again.Type)
			require.Equal(t, ev.Data == nil, again.Data == nil)
			if ev.Data != nil {
				require.Equal(t, fuzzJSONValue(t, ev.Data), fuzzJSONValue(t, again.Data))
			}
		}

		// A payload as senders write it.
		if typ == "" || !utf8.ValidString(typ) || (len(data) > 0 && !json.Valid(data)) {
			return
		}
		built := fuzzEventBody(t, typ, data)
		ev, err = decodeEvent(&consumer.Message{ID: id, Body: built, Headers: map[string]string{msgHeaderSource: source}})
		require.NoError(t, err, "payload %q", built)
		require.Equal(t, event{ID: id, Source: source, Type: typ, Data: ev.Data}, ev)
		require.Equal(t, len(data) == 0, ev.Data == nil, "payload %q", built)
		if len(data) > 0 {
			require.Equal(t, fuzzJSONValue(t, data), fuzzJSONValue(t, ev.Data))
		}
	})
}
