package envelope

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const goldenDir = "../../testdata/vehicle-frames"

// manifest is the part of testdata/vehicle-frames/manifest.json these tests use.
type manifest struct {
	Cases []goldenCase `json:"cases"`
}

type goldenCase struct {
	Name        string            `json:"name"`
	File        string            `json:"file"`
	PayloadFile string            `json:"payload_file"`
	Envelope    *upstreamEnvelope `json:"envelope_decoded_by_upstream"`
	Responses   []goldenResponse  `json:"expected_server_responses"`
}

// upstreamEnvelope is the envelope as Tesla's reference code decoded it.
// Stream fields are absent for non-Stream envelopes.
type upstreamEnvelope struct {
	TxID        string  `json:"txid"`
	Topic       string  `json:"topic"`
	MessageType uint8   `json:"message_type"`
	MessageID   string  `json:"message_id"`
	CreatedAt   *uint32 `json:"created_at"`
	SenderID    *string `json:"sender_id"`
	DeviceType  *string `json:"device_type"`
	DeviceID    *string `json:"device_id"`
	PayloadLen  int     `json:"payload_len"`
	PayloadText *string `json:"payload_text"`
}

type goldenResponse struct {
	File    string           `json:"file"`
	Kind    string           `json:"kind"`
	Decoded upstreamEnvelope `json:"decoded"`
	Hex     string           `json:"hex"`
}

func loadManifest(t testing.TB) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(goldenDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode manifest: %v", err)
	}
	if len(m.Cases) == 0 {
		t.Fatal("manifest has no cases")
	}
	return m.Cases
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkUpstream compares f field by field with what the reference decoded.
func checkUpstream(t *testing.T, f Frame, want upstreamEnvelope) {
	t.Helper()
	checkBytes(t, "txid", f.TxID, want.TxID)
	checkBytes(t, "topic", f.Topic, want.Topic)
	checkBytes(t, "message_id", f.MessageID, want.MessageID)
	if f.Type != MessageType(want.MessageType) {
		t.Errorf("message_type = %v, want %d", f.Type, want.MessageType)
	}
	if len(f.Stream.Payload) != want.PayloadLen {
		t.Errorf("payload length = %d, want %d", len(f.Stream.Payload), want.PayloadLen)
	}
	if want.CreatedAt != nil && f.Stream.CreatedAt != *want.CreatedAt {
		t.Errorf("created_at = %d, want %d", f.Stream.CreatedAt, *want.CreatedAt)
	}
	for _, c := range []struct {
		name string
		got  []byte
		want *string
	}{
		{"sender_id", f.Stream.SenderID, want.SenderID},
		{"device_type", f.Stream.DeviceType, want.DeviceType},
		{"device_id", f.Stream.DeviceID, want.DeviceID},
		{"payload text", f.Stream.Payload, want.PayloadText},
	} {
		if c.want != nil {
			checkBytes(t, c.name, c.got, *c.want)
		}
	}
	if f.Type != TypeStream && !equalFrame(Frame{Type: f.Type, TxID: f.TxID, Topic: f.Topic, MessageID: f.MessageID}, f) {
		t.Errorf("non-stream frame has stream fields: %s", describe(f))
	}
}

func checkBytes(t *testing.T, name string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func TestParseGolden(t *testing.T) {
	for _, c := range loadManifest(t) {
		if c.File == "" {
			continue // frame not stored (oversize, text frame)
		}
		t.Run(c.Name, func(t *testing.T) {
			frame := readGolden(t, c.File)
			f, err := Parse(frame)
			if c.Envelope == nil {
				if err == nil {
					t.Fatalf("Parse succeeded on a frame the reference could not decode: %s", describe(f))
				}
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadOffset) && !errors.Is(err, ErrBadVTable) {
					t.Errorf("error %v is not a structural error", err)
				}
				if !equalFrame(f, Frame{}) {
					t.Errorf("failed Parse returned fields: %s", describe(f))
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkUpstream(t, f, *c.Envelope)
			if c.PayloadFile != "" {
				if want := readGolden(t, c.PayloadFile); !bytes.Equal(f.Stream.Payload, want) {
					t.Errorf("payload differs from %s", c.PayloadFile)
				}
			}
		})
	}
}

// TestParseMalformedGolden pins the error of each malformed reference case.
func TestParseMalformedGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		want error
	}{
		{"11_malformed_truncated.bin", ErrTruncated},
		{"12_malformed_garbage.bin", ErrTruncated},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Parse(readGolden(t, tc.file))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestParseAckTypedFrame(t *testing.T) {
	f, err := Parse(readGolden(t, "14_behavior_ack_typed_envelope.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != TypeStreamAck {
		t.Fatalf("Type = %v, want %v", f.Type, TypeStreamAck)
	}
	checkBytes(t, "txid", f.TxID, "txid-14-acktype")
}

// TestAppendFrameGolden rebuilds every decodable golden frame from its parse;
// byte equality shows AppendFrame lays frames out as the reference does.
func TestAppendFrameGolden(t *testing.T) {
	for _, c := range loadManifest(t) {
		if c.File == "" || c.Envelope == nil {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			frame := readGolden(t, c.File)
			f, err := Parse(frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := AppendFrame(nil, f); !bytes.Equal(got, frame) {
				t.Errorf("AppendFrame differs from %s\n got %x\nwant %x", c.File, got, frame)
			}
		})
	}
}

// TestResponsesGolden builds every reference response and compares it with
// the manifest's hex, the stored file and, through Parse, the decoded fields.
func TestResponsesGolden(t *testing.T) {
	var n int
	for _, c := range loadManifest(t) {
		for i, r := range c.Responses {
			n++
			t.Run(fmt.Sprintf("%s/%d_%s", c.Name, i+1, r.Kind), func(t *testing.T) {
				want, err := hex.DecodeString(r.Hex)
				if err != nil {
					t.Fatal(err)
				}
				if file := readGolden(t, r.File); !bytes.Equal(file, want) {
					t.Fatalf("%s differs from the manifest hex", r.File)
				}
				d := r.Decoded
				var got []byte
				switch r.Kind {
				case "ack":
					got = AppendAck(nil, []byte(d.TxID), []byte(d.Topic))
				case "error":
					got = AppendError(nil, []byte(d.TxID), ErrorText)
				default:
					t.Fatalf("unknown response kind %q", r.Kind)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("response differs\n got %x\nwant %x", got, want)
				}
				f, err := Parse(got)
				if err != nil {
					t.Fatalf("Parse of own response: %v", err)
				}
				checkUpstream(t, f, d)
			})
		}
	}
	if n == 0 {
		t.Fatal("manifest lists no server responses")
	}
}

// equalFrame compares frames by value; nil and empty slices are equal.
func equalFrame(a, b Frame) bool {
	return bytes.Equal(a.TxID, b.TxID) &&
		bytes.Equal(a.Topic, b.Topic) &&
		bytes.Equal(a.MessageID, b.MessageID) &&
		a.Type == b.Type &&
		a.Stream.CreatedAt == b.Stream.CreatedAt &&
		bytes.Equal(a.Stream.SenderID, b.Stream.SenderID) &&
		bytes.Equal(a.Stream.Payload, b.Stream.Payload) &&
		bytes.Equal(a.Stream.DeviceType, b.Stream.DeviceType) &&
		bytes.Equal(a.Stream.DeviceID, b.Stream.DeviceID) &&
		a.Stream.DeliveredAtEpochMS == b.Stream.DeliveredAtEpochMS
}

func describe(f Frame) string {
	s := f.Stream
	return fmt.Sprintf("{txid %q topic %q message_id %q type %v created_at %d sender %q payload %x device_type %q device_id %q delivered %d}",
		f.TxID, f.Topic, f.MessageID, f.Type, s.CreatedAt, s.SenderID, s.Payload, s.DeviceType, s.DeviceID, s.DeliveredAtEpochMS)
}
