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
	"github.com/mochi-mqtt/server/v2/packets"
)

// The files, in the data directory, that hold the broker's retained
// messages: the bridge's own topics (those only the bridge may write), and
// the other clients' topics, apart, so that the cars' frequent changes do
// not rewrite what other clients retained, nor their changes the cars'
// data. Each file is rewritten only when its part changed.
const (
	retainedFile        = "mqtt-retained.bin"
	clientsRetainedFile = "mqtt-retained-clients.bin"
)

// store keeps the broker's retained messages in two files (see
// retainedFile). It does not write per message: the broker hook only notes
// which part changed, and the broker writes a snapshot of that part now and
// then (see Config.PersistInterval) and when it stops. A write replaces
// the file atomically, so a crash leaves the previous snapshot; the
// temporary files a crash leaves are removed at the next start.
type store struct {
	mqtt.HookBase
	dir  string
	ours func(topic string) bool // the bridge's own topics
	log  *slog.Logger

	dirtyOurs, dirtyClients atomic.Bool

	health saveHealth // failed saves, for the log, /healthz and metrics (storehealth.go)
}

func newStore(dataDir string, ours func(topic string) bool, log *slog.Logger) *store {
	return &store{dir: dataDir, ours: ours, log: log}
}

func (s *store) ID() string { return "fleet2mqtt-retained-store" }

func (s *store) Provides(b byte) bool {
	return b == mqtt.OnRetainMessage || b == mqtt.OnRetainedExpired
}

// OnRetainMessage notes that the retained messages changed (r is 1 for a
// message kept, -1 for one removed, 0 for nothing changed). The broker's
// own $SYS topics are not kept.
func (s *store) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	if r != 0 && !strings.HasPrefix(pk.TopicName, "$") {
		s.topicChanged(pk.TopicName)
	}
}

// topicChanged notes that topic's retained message changed.
func (s *store) topicChanged(topic string) {
	if s.ours(topic) {
		s.dirtyOurs.Store(true)
	} else {
		s.dirtyClients.Store(true)
	}
}

// changed notes that the bridge's retained messages changed: the broker's
// own deliveries (fanout) keep retained messages without mochi's hook.
func (s *store) changed() { s.dirtyOurs.Store(true) }

// OnRetainedExpired notes that a retained message expired.
func (s *store) OnRetainedExpired(topic string) { s.topicChanged(topic) }

// load removes the temporary files a crash left, then hands every message
// of the last snapshots to retain (mochi's retained index), before the
// broker serves. The messages' payloads share the memory of the file's
// contents, read once: a start with a large store holds one copy of it,
// not two. A missing file is an empty store; an unreadable one is set
// aside (renamed with .corrupt) and logged, and the broker starts without
// its messages rather than not at all.
func (s *store) load(retain func(packets.Packet) int64) error {
	s.removeLeftovers()
	n := 0
	for _, name := range []string{retainedFile, clientsRetainedFile} {
		path := filepath.Join(s.dir, name)
		raw, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read retained messages: %w", err)
		}
		if err := decodeRetainedFunc(raw, nil); err != nil { // all or nothing
			bad := path + ".corrupt"
			s.log.Error("retained messages unreadable; starting without them", "file", path, "moved_to", bad, "error", err)
			if rerr := os.Rename(path, bad); rerr != nil {
				s.log.Error("could not move unreadable retained messages aside", "error", rerr)
			}
			continue
		}
		_ = decodeRetainedFunc(raw, func(pk packets.Packet) {
			retain(pk)
			n++
		})
	}
	s.log.Debug("loaded retained messages", "dir", s.dir, "count", n)
	return nil
}

// removeLeftovers removes the temporary files of interrupted saves: only
// names this store makes (<file>.<digits>.tmp).
func (s *store) removeLeftovers() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return // a missing directory is made at the first save
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isStoreTemp(e.Name()) {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		if err := os.Remove(path); err != nil {
			s.log.Warn("could not remove the temporary file of an interrupted save", "file", path, "error", err)
			continue
		}
		s.log.Info("removed the temporary file of an interrupted save", "file", path)
	}
}

// isStoreTemp reports whether name is a temporary file of write:
// <retained file>.<digits>.tmp.
func isStoreTemp(name string) bool {
	for _, f := range []string{retainedFile, clientsRetainedFile} {
		if mid, ok := strings.CutPrefix(name, f+"."); ok {
			if digits, ok := strings.CutSuffix(mid, ".tmp"); ok && digits != "" && strings.Trim(digits, "0123456789") == "" {
				return true
			}
		}
	}
	return false
}

// save writes the part of the retained messages that changed since the
// last save; retained returns them (a copy of the broker's index).
func (s *store) save(retained func() map[string]packets.Packet) error {
	ours, clients := s.dirtyOurs.Swap(false), s.dirtyClients.Swap(false)
	if !ours && !clients {
		return nil
	}
	all := retained()
	var errs []error
	if ours {
		if err := s.write(retainedFile, all, s.ours); err != nil {
			s.dirtyOurs.Store(true) // try again next time
			errs = append(errs, err)
		}
	}
	if clients {
		if err := s.write(clientsRetainedFile, all, func(t string) bool { return !s.ours(t) }); err != nil {
			s.dirtyClients.Store(true)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// write replaces the file name with a snapshot of the messages of retained
// whose topic keep accepts: a temporary file in the same directory, synced,
// then renamed over the old one.
func (s *store) write(name string, retained map[string]packets.Packet, keep func(string) bool) (err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	f, err := os.CreateTemp(s.dir, name+".*.tmp")
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
	if err := encodeRetained(w, retained, keep); err != nil {
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
	if err := os.Rename(f.Name(), filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("save retained messages: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
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

// encodeRetained writes the messages of retained whose topic keep accepts
// (all when keep is nil).
func encodeRetained(w io.Writer, retained map[string]packets.Packet, keep func(topic string) bool) error {
	topics := make([]string, 0, len(retained))
	for t, pk := range retained {
		if len(pk.Payload) > 0 && !strings.HasPrefix(t, "$") && (keep == nil || keep(t)) {
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

// decodeRetainedFunc checks the file's contents raw and, when yield is not
// nil, hands it each message, retained, its payload and correlation data
// sharing raw's memory (which must not change afterwards). It stops at the
// first error; call it without yield first to hand over all or nothing.
func decodeRetainedFunc(raw []byte, yield func(packets.Packet)) error {
	if len(raw) < len(retainedMagic)+4 || !bytes.HasPrefix(raw, []byte(retainedMagic)) {
		return fmt.Errorf("%w: not a retained message file", errCorrupt)
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	d := decoder{b: body[len(retainedMagic):]}
	n := d.uvarint()
	if n > maxRetainedCount || n > uint64(len(d.b)) {
		return fmt.Errorf("%w: %d messages", errCorrupt, n)
	}
	for range n {
		topic := d.bytes()
		var pk packets.Packet
		pk.Payload = d.bytes()
		pk.FixedHeader = packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: d.byte()}
		pk.Created = d.varint()
		if pf := d.byte(); pf <= 1 {
			pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = pf, true
		}
		contentType, responseTopic := d.bytes(), d.bytes()
		if c := d.bytes(); len(c) > 0 {
			pk.Properties.CorrelationData = c
		}
		users := d.uvarint()
		if users > uint64(len(d.b)) {
			return fmt.Errorf("%w: %d user properties", errCorrupt, users)
		}
		for range users {
			k, v := d.bytes(), d.bytes()
			if yield != nil {
				pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: string(k), Val: string(v)})
			}
		}
		if d.err != nil {
			return d.err
		}
		if len(topic) == 0 || bytes.ContainsAny(topic, "+#") || pk.FixedHeader.Qos > 2 || len(pk.Payload) == 0 {
			return fmt.Errorf("%w: bad message for topic %q", errCorrupt, topic)
		}
		if yield != nil {
			pk.TopicName = string(topic)
			pk.Properties.ContentType = string(contentType)
			pk.Properties.ResponseTopic = string(responseTopic)
			yield(pk)
		}
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the last message", errCorrupt, len(d.b))
	}
	return nil
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
