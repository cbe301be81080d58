package ingest

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/fleet2mqtt/fleet2mqtt/ingest/envelope"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// clientFrame returns a masked client frame: op, fin, and a header that
// declares length (which may differ from len(payload)).
func clientFrame(op byte, fin bool, payload []byte, length uint64) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch {
	case length < 126:
		b = append(b, 0x80|byte(length))
	case length <= math.MaxUint16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(length))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, length)
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// scanChunks feeds stream to g in chunks of random sizes and returns how
// many bytes it passed on and the error that stopped it.
func scanChunks(g *frameGuard, stream []byte, rng *rand.Rand) (int, error) {
	passed := 0
	for off := 0; off < len(stream); {
		n := min(1+rng.IntN(40), len(stream)-off)
		k, err := g.scan(stream[off:off+n], 0)
		passed += k
		if err != nil {
			return passed, err
		}
		off += n
	}
	return passed, nil
}

// TestFrameGuardFollowsFrames: the guard finds every frame boundary of a
// stream of frames of every header shape, however the stream is cut into
// reads, and stops exactly before the header of a message declared too
// large, with its size.
func TestFrameGuardFollowsFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	frames := 0
	for range 200 {
		switch rng.IntN(5) {
		case 0:
			p := make([]byte, rng.IntN(126))
			stream = append(stream, clientFrame(websocket.PingMessage, true, p, uint64(len(p)))...)
		case 1:
			p := make([]byte, 126+rng.IntN(2000)) // 16-bit length
			stream = append(stream, clientFrame(websocket.BinaryMessage, true, p, uint64(len(p)))...)
		case 2:
			p := make([]byte, 70_000) // 64-bit length
			stream = append(stream, clientFrame(websocket.BinaryMessage, true, p, uint64(len(p)))...)
		case 3: // fragments
			p := make([]byte, rng.IntN(300))
			stream = append(stream, clientFrame(websocket.BinaryMessage, false, p, uint64(len(p)))...)
			stream = append(stream, clientFrame(0, true, p, uint64(len(p)))...)
			frames++
		default:
			stream = append(stream, clientFrame(websocket.BinaryMessage, true, nil, 0)...)
		}
		frames++
	}
	for seed := range uint64(20) {
		var g frameGuard
		g.control.full = -time.Hour // a budget that does not run out here
		passed, err := scanChunks(&g, stream, rand.New(rand.NewPCG(seed, 7)))
		if err != nil || passed != len(stream) {
			t.Fatalf("seed %d: %d of %d bytes passed, %v", seed, passed, len(stream), err)
		}
		if g.hdrLen != 0 || g.remaining != 0 {
			t.Fatalf("seed %d: the guard ends inside a frame (header %d bytes, %d to come)", seed, g.hdrLen, g.remaining)
		}
	}

	for _, tc := range []struct {
		name     string
		bad      []byte
		declared uint64
	}{
		{"header of 2^63-1", clientFrame(websocket.BinaryMessage, true, nil, math.MaxInt64), math.MaxInt64},
		{"header of the limit+1", clientFrame(websocket.BinaryMessage, true, nil, maxSkippedMessage+1), maxSkippedMessage + 1},
		{"fragments adding up", append(clientFrame(websocket.BinaryMessage, false, nil, maxSkippedMessage),
			clientFrame(0, true, nil, 1)...), maxSkippedMessage + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := append(append([]byte(nil), stream...), tc.bad...)
			// The offending header starts after the stream, or, for
			// fragments, after the first fragment's header and its
			// (undelivered) payload: only its header is in bad.
			want := len(stream)
			if strings.HasPrefix(tc.name, "fragments") {
				want = len(stream) + len(clientFrame(websocket.BinaryMessage, false, nil, maxSkippedMessage))
				s = append(s[:want], make([]byte, maxSkippedMessage)...)
				s = append(s, clientFrame(0, true, nil, 1)...)
				want += maxSkippedMessage
			}
			for seed := range uint64(5) {
				g := frameGuard{}
				g.control.full = -time.Hour
				passed, err := scanChunks(&g, s, rand.New(rand.NewPCG(seed, 9)))
				var tooLarge errMessageTooLarge
				if !errors.As(err, &tooLarge) || tooLarge.declared != tc.declared {
					t.Fatalf("seed %d: error %v, want a message of %d bytes refused", seed, err, tc.declared)
				}
				// Bytes of the header that came in earlier reads were
				// passed on with them.
				if passed < want || passed >= want+14 {
					t.Fatalf("seed %d: %d bytes passed, want %d (up to the offending header)", seed, passed, want)
				}
			}
		})
	}
}

// TestControlBudget: controlBurst control frames at once, then
// controlRate per second; a car that keeps within the rate is never
// refused.
func TestControlBudget(t *testing.T) {
	var b controlBudget
	now := time.Hour
	for i := range controlBurst {
		if !b.allow(now) {
			t.Fatalf("control frame %d of a burst of %d refused", i+1, controlBurst)
		}
	}
	if b.allow(now) {
		t.Fatalf("control frame %d at once allowed", controlBurst+1)
	}
	now += controlInterval
	if !b.allow(now) {
		t.Fatal("a control frame one interval after the burst was refused")
	}
	if b.allow(now) {
		t.Fatal("two control frames in one interval after the burst allowed")
	}
	// Within the rate for a long time: never refused.
	for i := range 10_000 {
		now += controlInterval
		if !b.allow(now) {
			t.Fatalf("control frame %d at the steady rate refused", i)
		}
	}
	// Idle long: the whole burst again, no more.
	now += time.Hour
	n := 0
	for b.allow(now) {
		n++
	}
	if n != controlBurst {
		t.Fatalf("after an idle hour %d control frames at once allowed, want %d", n, controlBurst)
	}
}

// TestPingFloodDropsCar: a car that sends pings without pause is dropped
// with close 1008, logged and counted; a car that sends a burst within
// the limit is answered and served.
func TestPingFloodDropsCar(t *testing.T) {
	logs := &lockedBuffer{}
	ts := startServer(t, nil, withLogger(slog.New(slog.NewTextHandler(logs, nil))))

	pongs := 0
	ws := ts.car(t)
	ws.SetPongHandler(func(string) error { pongs++; return nil })
	for range controlBurst {
		if err := ws.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	resp := exchange(t, ws, readGolden(t, "01_v_scalar_types.bin")) // reading handles the pongs
	if f, err := envelope.Parse(resp); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("after %d pings: response %v (%v), want an ack", controlBurst, f.Type, err)
	}
	if pongs != controlBurst {
		t.Errorf("%d pongs for %d pings", pongs, controlBurst)
	}

	// The flood: far more pings than the burst, sent faster than the rate
	// could refill it in any run of this test.
	flood := ts.car(t)
	go func() {
		for range 10 * controlBurst {
			if flood.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)) != nil {
				return // the server has closed the connection
			}
		}
	}()
	_ = flood.SetReadDeadline(time.Now().Add(10 * time.Second))
	var err error
	for err == nil {
		_, _, err = flood.ReadMessage()
	}
	// The close frame comes first, unless pings the server left unread
	// made its kernel reset the connection, which may discard the close
	// frame on this side before it is read.
	var closeErr *websocket.CloseError
	if errors.As(err, &closeErr) && closeErr.Code != websocket.ClosePolicyViolation || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the flooding car's connection ended with %v, want close 1008", err)
	}
	waitFor(t, "the flood counted", func() bool { return ts.srv.Stats().Floods == 1 })
	if !strings.Contains(logs.String(), "vehicle dropped: control frames too fast") {
		t.Errorf("no log line for the flood:\n%s", logs)
	}
	// The first car is still served.
	if f, err := envelope.Parse(exchange(t, ws, readGolden(t, "01_v_scalar_types.bin"))); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("the other car after the flood: %v (%v), want an ack", f.Type, err)
	}
}

// TestHugeFrameHeaderRefusedAtOnce: a frame header that declares more than
// can be skipped is answered with the protocol's error response as soon as
// it arrives (the idle timeout is an hour), the connection is closed with
// 1009, and the log names the declared size and the limit. A frame just
// over the limit is read, answered with the error response, and the
// connection goes on.
func TestHugeFrameHeaderRefusedAtOnce(t *testing.T) {
	logs := &lockedBuffer{}
	ts := startServer(t, func(c *Config) { c.PingInterval, c.IdleTimeout = 30*time.Minute, time.Hour },
		withLogger(slog.New(slog.NewTextHandler(logs, nil))))
	for _, declared := range []uint64{math.MaxInt64, 1 << 62, maxSkippedMessage + 1} {
		t.Run(strconv.FormatUint(declared, 10), func(t *testing.T) {
			ws := ts.car(t)
			// The header, and a little of what it announces.
			if _, err := ws.NetConn().Write(clientFrame(websocket.BinaryMessage, true, make([]byte, 4096), declared)[:4096]); err != nil {
				t.Fatal(err)
			}
			f, err := envelope.Parse(readResponse(t, ws))
			if err != nil || f.Type != envelope.TypeStream || string(f.Stream.Payload) != envelope.ErrorText {
				t.Fatalf("response %v %q (%v), want the error response", f.Type, f.Stream.Payload, err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Fatalf("after the error response: %v, want close 1009", err)
			}
			want := "declared=" + strconv.FormatUint(declared, 10) + " limit=1000000"
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs)
			}
		})
	}

	ws := ts.car(t)
	if err := ws.WriteMessage(websocket.BinaryMessage, make([]byte, MaxFrameSize+1)); err != nil {
		t.Fatal(err)
	}
	f, err := envelope.Parse(readResponse(t, ws))
	if err != nil || f.Type != envelope.TypeStream || string(f.Stream.Payload) != envelope.ErrorText {
		t.Fatalf("a frame of %d bytes: response %v (%v), want the error response", MaxFrameSize+1, f.Type, err)
	}
	if !strings.Contains(logs.String(), "size=1000001 limit=1000000") {
		t.Errorf("log lacks the size of the frame just over the limit:\n%s", logs)
	}
	if f, err := envelope.Parse(exchange(t, ws, readGolden(t, "01_v_scalar_types.bin"))); err != nil || f.Type != envelope.TypeStreamAck {
		t.Fatalf("after a frame just over the limit: %v (%v), want an ack", f.Type, err)
	}
	if got := ts.srv.Stats().Oversized; got != 4 {
		t.Errorf("Stats().Oversized = %d, want 4", got)
	}
}

// TestDeflateOfferDeclined: a car offering permessage-deflate gets no
// extension, and a compressed frame sent anyway (a decompression bomb:
// 64 KB that inflate to 64 MB) closes the connection as a protocol error,
// without a record.
func TestDeflateOfferDeclined(t *testing.T) {
	ts := startServer(t, nil)
	cert := ts.pki.Vehicles[testVIN]
	d := websocket.Dialer{TLSClientConfig: ts.clientTLS(&cert), HandshakeTimeout: 5 * time.Second, EnableCompression: true}
	ws, resp, err := d.Dial("wss://"+ts.addr+"/", nil) // offers permessage-deflate
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("the server accepted extensions %q", ext)
	}

	var bomb bytes.Buffer
	zw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	frame := clientFrame(websocket.BinaryMessage, true, bomb.Bytes(), uint64(bomb.Len()))
	frame[0] |= 0x40 // RSV1: compressed
	// The server refuses the frame at its header, so it may close the
	// connection before the rest is written; that close may even reset
	// the connection before its close frame is read here.
	_, werr := ws.NetConn().Write(frame)
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = ws.ReadMessage()
	var closeErr *websocket.CloseError
	if errors.As(err, &closeErr) && closeErr.Code != websocket.CloseProtocolError || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after a compressed frame (written: %v): %v, want close 1002", werr, err)
	}
	if n := len(ts.sink.byTopic(telemetry.TopicV)); n != 0 {
		t.Errorf("a compressed frame produced %d records", n)
	}
}
