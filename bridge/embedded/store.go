package embedded

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainedFile is the name of the file, in the data directory, that holds
// the broker's retained messages.
const retainedFile = "mqtt-retained.bin"

// store keeps the broker's retained messages in a file. It does not write
// per message: the broker hook only notes that something changed, and the
// broker writes a snapshot of all retained messages now and then (see
// Config.PersistInterval) and when it stops. A write replaces the file
// atomically, so a crash leaves the previous snapshot.
type store struct {
	mqtt.HookBase
	path  string
	log   *slog.Logger
	dirty atomic.Bool
}

func newStore(dataDir string, log *slog.Logger) *store {
	return &store{path: filepath.Join(dataDir, retainedFile), log: log}
}

func (s *store) ID() string { return "fleet2mqtt-retained-store" }

func (s *store) Provides(b byte) bool {
	return b == mqtt.OnRetainMessage || b == mqtt.OnRetainedExpired || b == mqtt.StoredRetainedMessages
}

// OnRetainMessage notes that the retained messages changed (r is 1 for a
// message kept, -1 for one removed, 0 for nothing changed). The broker's
// own $SYS topics are not kept.
func (s *store) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	if r != 0 && !strings.HasPrefix(pk.TopicName, "$") {
		s.dirty.Store(true)
	}
}

// changed notes that the retained messages changed: the broker's own
// deliveries (fanout) keep retained messages without mochi's hook.
func (s *store) changed() { s.dirty.Store(true) }

// OnRetainedExpired notes that a retained message expired.
func (s *store) OnRetainedExpired(string) { s.dirty.Store(true) }

// StoredRetainedMessages returns the messages of the last snapshot. A
// missing file is an empty store; an unreadable one is set aside (renamed
// with .corrupt) and logged, and the broker starts without retained
// messages rather than not at all.
func (s *store) StoredRetainedMessages() ([]storage.Message, error) {
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read retained messages: %w", err)
	}
	msgs, err := decodeRetained(raw)
	if err != nil {
		bad := s.path + ".corrupt"
		s.log.Error("retained messages unreadable; starting without them", "file", s.path, "moved_to", bad, "error", err)
		if rerr := os.Rename(s.path, bad); rerr != nil {
			s.log.Error("could not move unreadable retained messages aside", "error", rerr)
		}
		return nil, nil
	}
	s.log.Debug("loaded retained messages", "file", s.path, "count", len(msgs))
	return msgs, nil
}

// save writes the retained messages, if anything changed since the last
// save; retained returns them (a copy of the broker's index).
func (s *store) save(retained func() map[string]packets.Packet) error {
	if !s.dirty.Swap(false) {
		return nil
	}
	if err := s.write(retained()); err != nil {
		s.dirty.Store(true) // try again next time
		return err
	}
	return nil
}

// write replaces the file with a snapshot of retained: a temporary file in
// the same directory, synced, then renamed over the old one.
func (s *store) write(retained map[string]packets.Packet) (err error) {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	f, err := os.CreateTemp(dir, retainedFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	if err := encodeRetained(w, retained); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; not all systems can
		d.Close()
	}
	return nil
}

// The file format: a magic line, the number of messages, the messages
// sorted by topic ($ topics, the broker's own, are left out), and a CRC-32C of everything before it. Numbers are
// unsigned varints, strings and byte strings are length-prefixed. Per
// message: topic, payload, QoS, creation time (Unix seconds, zigzag), the
// payload format indicator (0 or 1, 2 for absent), content type, response
// topic, correlation data, and the user properties as a count of
// key/value pairs.
const retainedMagic = "fleet2mqtt retained v1\n"

// Limits that keep a damaged file from making the decoder allocate wildly.
const (
	maxRetainedCount = 1 << 24
	maxRetainedBytes = 256 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodeRetained(w io.Writer, retained map[string]packets.Packet) error {
	topics := make([]string, 0, len(retained))
	for t, pk := range retained {
		if len(pk.Payload) > 0 && !strings.HasPrefix(t, "$") {
			topics = append(topics, t)
		}
	}
	slices.Sort(topics)

	h := crc32.New(crcTable)
	mw := io.MultiWriter(w, h)
	var e encoder
	e.buf = append(e.buf, retainedMagic...)
	e.uvarint(uint64(len(topics)))
	for _, t := range topics {
		pk := retained[t]
		e.bytes([]byte(pk.TopicName))
		e.bytes(pk.Payload)
		e.buf = append(e.buf, pk.FixedHeader.Qos)
		e.buf = binary.AppendVarint(e.buf, pk.Created)
		pf := byte(2)
		if pk.Properties.PayloadFormatFlag {
			pf = pk.Properties.PayloadFormat
		}
		e.buf = append(e.buf, pf)
		e.bytes([]byte(pk.Properties.ContentType))
		e.bytes([]byte(pk.Properties.ResponseTopic))
		e.bytes(pk.Properties.CorrelationData)
		e.uvarint(uint64(len(pk.Properties.User)))
		for _, u := range pk.Properties.User {
			e.bytes([]byte(u.Key))
			e.bytes([]byte(u.Val))
		}
		if len(e.buf) >= 32<<10 {
			if _, err := mw.Write(e.buf); err != nil {
				return err
			}
			e.buf = e.buf[:0]
		}
	}
	if _, err := mw.Write(e.buf); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, h.Sum32()))
	return err
}

type encoder struct{ buf []byte }

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

func (e *encoder) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

var errCorrupt = errors.New("corrupt retained message file")

func decodeRetained(raw []byte) ([]storage.Message, error) {
	if len(raw) < len(retainedMagic)+4 || !bytes.HasPrefix(raw, []byte(retainedMagic)) {
		return nil, fmt.Errorf("%w: not a retained message file", errCorrupt)
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	d := decoder{b: body[len(retainedMagic):]}
	n := d.uvarint()
	if n > maxRetainedCount || n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: %d messages", errCorrupt, n)
	}
	msgs := make([]storage.Message, 0, n)
	for range n {
		var m storage.Message
		m.TopicName = string(d.bytes())
		m.Payload = d.bytes()
		m.FixedHeader = packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: d.byte()}
		m.Created = d.varint()
		if pf := d.byte(); pf <= 1 {
			m.Properties.PayloadFormat, m.Properties.PayloadFormatFlag = pf, true
		}
		m.Properties.ContentType = string(d.bytes())
		m.Properties.ResponseTopic = string(d.bytes())
		if c := d.bytes(); len(c) > 0 {
			m.Properties.CorrelationData = c
		}
		users := d.uvarint()
		if users > uint64(len(d.b)) {
			return nil, fmt.Errorf("%w: %d user properties", errCorrupt, users)
		}
		for range users {
			m.Properties.User = append(m.Properties.User, packets.UserProperty{Key: string(d.bytes()), Val: string(d.bytes())})
		}
		if d.err != nil {
			return nil, d.err
		}
		if m.TopicName == "" || strings.ContainsAny(m.TopicName, "+#") || m.FixedHeader.Qos > 2 || len(m.Payload) == 0 {
			return nil, fmt.Errorf("%w: bad message for topic %q", errCorrupt, m.TopicName)
		}
		msgs = append(msgs, m)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last message", errCorrupt, len(d.b))
	}
	return msgs, nil
}

// decoder reads the file format; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errCorrupt)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes returns a length-prefixed byte string; it shares memory with the
// file's contents, which the caller does not reuse.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) || n > maxRetainedBytes {
		d.fail()
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}
