package jetstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// fuzzFrame is one message as a client published it: its header block
// (nil for PUB) and its payload.
type fuzzFrame struct{ hdr, body []byte }

// fuzzWire stands in for a NATS server on an in-process connection. It
// answers the client's handshake and PINGs and hands over every message
// published, so that a test sees the bytes nats.go puts on the wire.
type fuzzWire struct{ frames chan fuzzFrame }

func (w *fuzzWire) InProcessConn() (net.Conn, error) {
	client, server := net.Pipe()
	go w.serve(server)
	return client, nil
}

func (w *fuzzWire) serve(c net.Conn) {
	defer c.Close()
	const info = `INFO {"server_id":"fuzz","version":"2.11.0","proto":1,"headers":true,"max_payload":67108864}` + "\r\n"
	if _, err := io.WriteString(c, info); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "PING":
			if _, err := io.WriteString(c, "PONG\r\n"); err != nil {
				return
			}
		case "PUB", "HPUB": // PUB subject [reply] size, HPUB subject [reply] header-size size
			size, _ := strconv.Atoi(f[len(f)-1])
			hsize := 0
			if f[0] == "HPUB" {
				hsize, _ = strconv.Atoi(f[len(f)-2])
			}
			buf := make([]byte, size+2) // and CRLF
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			fr := fuzzFrame{body: buf[hsize:size]}
			if f[0] == "HPUB" {
				fr.hdr = buf[:hsize]
			}
			w.frames <- fr
		}
	}
}

// fuzzTransport publishes messages through a nats.go connection to a
// fuzzWire and reads them back as a subscriber's client would.
type fuzzTransport struct {
	nc   *nats.Conn
	wire *fuzzWire
}

func newFuzzTransport(tb testing.TB) *fuzzTransport {
	tb.Helper()
	w := &fuzzWire{frames: make(chan fuzzFrame, 1)}
	nc, err := nats.Connect("nats://fuzz.invalid:4222", nats.InProcessServer(w), nats.NoReconnect())
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	return &fuzzTransport{nc: nc, wire: w}
}

// send publishes m and returns the message decoded from the bytes sent.
func (tr *fuzzTransport) send(t *testing.T, m *nats.Msg) (*nats.Msg, error) {
	t.Helper()
	if err := tr.nc.PublishMsg(m); err != nil {
		return nil, err
	}
	require.NoError(t, tr.nc.Flush())
	var fr fuzzFrame
	select {
	case fr = <-tr.wire.frames:
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached the server")
	}
	out := &nats.Msg{Subject: m.Subject, Data: fr.body}
	if fr.hdr != nil {
		h, err := nats.DecodeHeadersMsg(fr.hdr)
		require.NoError(t, err, "header block %q", fr.hdr)
		out.Header = h
	}
	return out, nil
}

// fuzzMeta is the metadata decode gets with each message in these tests.
func fuzzMeta() *nats.MsgMetadata {
	meta := &nats.MsgMetadata{NumDelivered: 3, Stream: "S", Timestamp: time.Unix(1, 0)}
	meta.Sequence.Stream = 42
	return meta
}

// fuzzRequireSame fails unless got is want as decode gives it back.
func fuzzRequireSame(t *testing.T, want, got consumer.Message, attempt int) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "ID")
	require.Equal(t, want.Key, got.Key, "Key")
	require.True(t, bytes.Equal(want.Body, got.Body), "body %q, want %q", got.Body, want.Body)
	require.Equal(t, want.Headers, got.Headers, "Headers")
	require.Equal(t, attempt, got.Attempt, "Attempt")
	require.True(t, want.EnqueuedAt.Equal(got.EnqueuedAt), "EnqueuedAt %s, want %s", got.EnqueuedAt, want.EnqueuedAt)
}

// fuzzASCIIPrefixFold reports whether s starts with prefix, ignoring the
// case of ASCII letters.
func fuzzASCIIPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		a, b := s[i], prefix[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// fuzzValueOK is the rule for header values (and the ID and Key, sent as
// header values): no line break, and no space or tab at either end, which
// nats.go would trim.
func fuzzValueOK(v string) bool {
	if strings.ContainsAny(v, "\r\n") || v == "" {
		return !strings.ContainsAny(v, "\r\n")
	}
	first, last := v[0], v[len(v)-1]
	return first != ' ' && first != '\t' && last != ' ' && last != '\t'
}

// FuzzValidHeader checks reservedHeader and validHeader against their
// rules written out byte by byte, and validHeader's promise: a header it
// accepts, sent by nats.go and read back, is the header sent.
func FuzzValidHeader(f *testing.F) {
	for _, h := range [][2]string{
		{"content-type", "application/json"}, {"x-empty", ""}, {"x-unicode", "héllo, 世界"},
		{"Trace", "abc"}, {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"Nats-Msg-Id", "theirs"}, {"nats-expected-stream", "S"}, {"IDEMQ-KEY", "k"}, {"Idemq", "x"}, {"Nats", "x"},
		{"", "v"}, {"a b", "v"}, {"a:b", "v"}, {"a\x7f", "v"}, {"é", "v"}, {"a", "line\nbreak"}, {"a", "cr\r"},
		{"a", " lead"}, {"a", "\tlead"}, {"a", "mid dle"}, {"a", "\x00\xff"}, {"a", "\v"},
		{"~!#$%&'*+-.^_`|", "v"}, {"K", "v:w"},
	} {
		f.Add(h[0], h[1])
	}
	tr := newFuzzTransport(f)
	f.Fuzz(func(t *testing.T, k, v string) {
		reserved := fuzzASCIIPrefixFold(k, "Nats-") || fuzzASCIIPrefixFold(k, "Idemq-")
		require.Equal(t, reserved, reservedHeader(k), "%q", k)

		want := k != "" && !reserved && fuzzValueOK(v)
		for i := range len(k) {
			if c := k[i]; c < '!' || c > '~' || strings.ContainsRune(`"()/,:;<=>?@[\]{}`, rune(c)) {
				want = false
			}
		}
		err := validHeader(k, v)
		if !want {
			require.Error(t, err, "header %q: %q", k, v)
			return
		}
		require.NoError(t, err, "header %q: %q", k, v)

		m := consumer.Message{ID: "id-1", EnqueuedAt: time.Unix(1_748_779_200, 0), Headers: map[string]string{k: v}}
		nm, err := encode("orders", &m, true)
		require.NoError(t, err)
		got, err := tr.send(t, nm)
		require.NoError(t, err, "nats.go refuses header %q: %q", k, v)
		require.Equal(t, []string{v}, got.Header[k], "header %q: %q came back as %q", k, v, got.Header[k])
	})
}

// FuzzEncodeDecode builds messages from the fuzz arguments and checks
// that encode refuses exactly those its rules exclude, and that a message
// it accepts comes back from decode as it was, both straight from encode
// and after nats.go has written it out and read it back.
func FuzzEncodeDecode(f *testing.F) {
	f.Add("id-1", "k", []byte{0, 1, 2}, "content-type", "application/json", "x-unicode", "héllo, 世界", int64(1741064767), int64(890123456), true)
	f.Add("id-1", "k", []byte{0, 1, 2}, "content-type", "application/json", "x-empty", "", int64(1741064767), int64(890123456), false)
	f.Add("01J2XK5V8Q", "", []byte(nil), "", "", "", "", int64(0), int64(1), true)
	f.Add("id", "key", []byte("body"), "Trace", "abc", "Trace", "abd", int64(-62135596800), int64(1), true)
	f.Add("id", "key", []byte(""), "a", "b", "c", "d", int64(253402300799), int64(999999999), false)
	f.Add("line\nbreak", "k", []byte("x"), "a", "b", "", "", int64(1), int64(0), true)
	f.Add("id", "k\r", []byte("x"), "a", "b", "", "", int64(1), int64(0), true)
	f.Add("id", "k", []byte("x"), "Nats-Msg-Id", "theirs", "", "", int64(1), int64(0), true)
	f.Add("id", "k", []byte("x"), "", "orphan", "", "", int64(1), int64(0), true)
	f.Add("id", "k", []byte("x"), "a", " lead", "", "", int64(1), int64(0), true)
	f.Add("id", "k", []byte("x"), "a b", "v", "", "", int64(1), int64(0), true)
	f.Add("\xff\x00", "\xfe", []byte("\xff"), "a", "\xff", "", "", int64(1), int64(0), false)
	f.Add("stream:42", "k", []byte("x"), "a", "b", "", "", int64(9223372036), int64(-1), true)
	tr := newFuzzTransport(f)
	f.Fuzz(func(t *testing.T, id, key string, body []byte, k1, v1, k2, v2 string, sec, nsec int64, dedupe bool) {
		if id == "" {
			id = "id-1" // the publisher fills in an empty ID
		}
		var headers map[string]string
		for _, h := range [][2]string{{k1, v1}, {k2, v2}} {
			if h[0] != "" || h[1] != "" {
				if headers == nil {
					headers = map[string]string{}
				}
				headers[h[0]] = h[1]
			}
		}
		// EnqueuedAt, set as the publisher does, in years 1 to 9999,
		// which RFC 3339 can hold.
		const minSec, maxSec = -62135596800, 253402300799
		sec = minSec + (sec%(maxSec-minSec+1)+(maxSec-minSec+1))%(maxSec-minSec+1)
		at := time.Unix(sec, (nsec%1e9+1e9)%1e9)
		if at.IsZero() {
			at = at.Add(1)
		}
		m := consumer.Message{ID: id, Key: key, Body: body, Headers: headers, Attempt: 7, EnqueuedAt: at}

		wantErr := !fuzzValueOK(id) || !fuzzValueOK(key)
		for k, v := range headers {
			if validHeader(k, v) != nil {
				wantErr = true
			}
		}
		nm, err := encode("orders", &m, dedupe)
		if wantErr {
			require.Error(t, err)
			require.Nil(t, nm)
			return
		}
		require.NoError(t, err)
		_, withMsgID := nm.Header[headerMsgID]
		require.Equal(t, dedupe, withMsgID)

		fuzzRequireSame(t, m, decode(nm, fuzzMeta()), 3)

		got, err := tr.send(t, nm)
		require.NoError(t, err, "nats.go refuses the message encode made")
		fuzzRequireSame(t, m, decode(got, fuzzMeta()), 3)
	})
}

// FuzzDecode feeds decode messages whose header block comes from the fuzz
// input, read by nats.go as it reads a delivery, and checks what decode
// makes of them: the ID the headers or the stream position give, the Key
// and EnqueuedAt headers, every other header but the reserved ones, the
// delivery count as Attempt; and that the message, if encode takes it,
// decodes from encode's output to itself.
func FuzzDecode(f *testing.F) {
	for _, block := range []string{
		"\r\nNats-Msg-Id: id-1\r\nIdemq-Key: k\r\nIdemq-Enqueued-At: 2025-03-04T04:06:07.890123456Z\r\ncontent-type: application/json\r\n",
		"\r\nIdemq-Id: id-1\r\nIdemq-Enqueued-At: 2025-03-04T05:06:07+01:00\r\nx-empty:\r\n",
		"\r\nNats-Msg-Id: theirs\r\nTrace: abc\r\n",
		"\r\nIdemq-Id:\r\nNats-Msg-Id: theirs\r\n",
		"\r\nTrace: a\r\nTrace: b\r\nidemq-key: lower\r\nNATS-MSG-ID: upper\r\n",
		"\r\nIdemq-Enqueued-At: 0001-01-01T00:00:00Z\r\n",
		"\r\nIdemq-Enqueued-At: yesterday\r\nIdemq-Key:   spaced  \r\n",
		"\r\nIdemq-Enqueued-At: 9999-12-31T23:59:59.999999999+23:59\r\n",
		"\r\nx-unicode: héllo, 世界 \r\n: no name\r\n\xff: \xfe\r\n",
		"\r\n",
		" 404 No Messages\r\n",
		"\r\nno colon\r\n",
	} {
		f.Add(block, []byte("body"), "S", uint64(42), uint32(2), int64(1_748_779_200_000_000_000))
	}
	f.Add("\r\n", []byte(nil), "", uint64(0), uint32(0), int64(0))
	f.Add("\r\na: b", []byte{0, 1, 2}, "str\r\neam", uint64(1<<64-1), uint32(1<<32-1), int64(-1))
	f.Fuzz(func(t *testing.T, block string, body []byte, stream string, seq uint64, delivered uint32, ts int64) {
		// block is the rest of the status line and the header lines.
		h, err := nats.DecodeHeadersMsg([]byte("NATS/1.0" + block + "\r\n\r\n"))
		if err != nil {
			return
		}
		msg := &nats.Msg{Subject: "orders", Header: h, Data: body}
		meta := &nats.MsgMetadata{NumDelivered: uint64(delivered) + 1, Stream: stream, Timestamp: time.Unix(0, ts)}
		meta.Sequence.Stream = seq

		m := decode(msg, meta)

		require.Equal(t, body, m.Body)
		require.Equal(t, int(delivered)+1, m.Attempt)
		wantID := h.Get(headerID)
		if wantID == "" {
			wantID = h.Get(headerMsgID)
		}
		if wantID == "" {
			wantID = stream + ":" + strconv.FormatUint(seq, 10)
		}
		require.Equal(t, wantID, m.ID)
		require.NotEmpty(t, m.ID)
		require.Equal(t, h.Get(headerKey), m.Key)
		at, perr := time.Parse(time.RFC3339Nano, h.Get(headerEnqueuedAt))
		if perr != nil || at.IsZero() {
			at = meta.Timestamp
		}
		require.True(t, at.Equal(m.EnqueuedAt), "EnqueuedAt %s, want %s", m.EnqueuedAt, at)
		n := 0
		for k, vs := range h {
			if reservedHeader(k) {
				require.NotContains(t, m.Headers, k)
				continue
			}
			n++
			require.Equal(t, vs[0], m.Headers[k], "header %q", k)
		}
		require.Len(t, m.Headers, n)
		if n == 0 {
			require.Nil(t, m.Headers)
		}

		for _, dedupe := range []bool{true, false} {
			nm, err := encode("orders", &m, dedupe)
			if err != nil {
				continue
			}
			fuzzRequireSame(t, m, decode(nm, meta), m.Attempt)
		}
	})
}
