package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

//go:generate go run ./internal/genoneof -spec ../telemetry/spec -out oneof_gen.go

// Errors DecodePayload returns, wrapped with what went wrong where.
var (
	// ErrMalformedPayload means the payload is not valid protobuf of the
	// message type its topic demands: a truncated field, a length past the
	// end, a known field with the wrong wire type.
	ErrMalformedPayload = errors.New("malformed payload")
	// ErrUnknownTopic means the topic has no payload type we know.
	ErrUnknownTopic = errors.New("unknown topic")
)

// millisThreshold is the smallest Timestamp.seconds of an alert that is
// really milliseconds: some firmware fills seconds with epoch milliseconds.
// It is the largest number of seconds a protobuf Duration may hold (about
// 10,000 years), far beyond any real date in seconds.
const millisThreshold = 315576000000

// DecodePayload decodes the protobuf payload of a frame on topic into rec:
// V is a Payload, alerts VehicleAlerts, errors VehicleErrors and
// connectivity VehicleConnectivity. It sets rec.Topic, rec.CreatedAt (the
// payload's own created_at, zero when it has none: the caller then uses the
// envelope's time), rec.Resend, and appends to rec.Data, rec.Alerts or
// rec.Errors, or sets rec.Connectivity. It does not reset rec: callers Reset
// it and reuse its slices. It leaves VIN, TxID and ReceivedAt alone.
//
// Every signal value is normalised by telemetry.Normalize (which, as it
// documents, changes only strings). A Datum without a value, or with a Value
// that has no member set, yields the zero Value (telemetry.KindNone); the
// invalid member, whatever its boolean, yields telemetry.InvalidValue, as
// Tesla's reference server reads it.
// Unknown fields are skipped, so newer firmware still decodes. Strings are
// taken as they are, without UTF-8 validation. A timestamp of exactly zero
// is treated as absent. Alert start and end times in milliseconds (see
// millisThreshold) are converted.
//
// Memory: payload is only read during the call and never referenced after
// it, so the caller may reuse its buffer. All strings of the decoded record
// (string values, also the raw strings normalised values keep, alert and
// error names, error tags and bodies, connectivity ids) share one backing
// array: a private copy of payload, made once, on the first non-empty
// string. It is never written after the copy, and it stays alive as long as
// any of those strings does (a payload is at most a frame, 1 MB). A record
// without strings makes no copy. Decoding allocates nothing else per field:
// a V record costs at most that one allocation plus the growth of rec.Data
// (and the name of an enum number newer than the catalog). Alerts add one
// slice for their audiences, errors a map per error with tags.
//
// Malformed input yields an error wrapping ErrMalformedPayload, never a
// panic; rec then holds a partial record that callers must discard. An
// unknown topic yields an error wrapping ErrUnknownTopic.
//
// Refused on purpose, so that one car cannot make the server (and every
// MQTT subscriber) hold without bound what it keeps per signal or name: a
// Datum whose field number is outside the catalog and the window above it
// that newer firmware may use (see MaxFieldNumber), and the data items,
// alerts or errors of a record past MaxRecordItems. They are decoded (a
// malformed one is still an error) and left out of rec; the rest of the
// record is kept, and the server acknowledges it as usual, so that the car
// does not send it again.
func DecodePayload(topic telemetry.Topic, payload []byte, rec *telemetry.Record) error {
	_, err := decodePayload(topic, payload, rec)
	return err
}

// Limits on what one record may carry; see DecodePayload.
const (
	// MaxFieldNumber is the highest field number a Datum may have: the
	// catalog's last field plus a window for fields newer firmware adds
	// before the catalog knows them (Tesla numbers new fields
	// consecutively, a few dozen a year). Such a field is published as
	// Field(<number>). Any other number is no field of any firmware.
	MaxFieldNumber = int(telemetry.MaxField) + 256
	// MaxRecordItems is the most data items, alerts or errors one record
	// may carry: several times the catalog, which a car sends at most once
	// per field.
	MaxRecordItems = 1024
)

// refused counts what decodePayload left out of a record on purpose.
type refused struct {
	unknownFields int // data items with a field number over MaxFieldNumber
	excess        int // data items, alerts or errors past MaxRecordItems
}

func (r refused) total() int { return r.unknownFields + r.excess }

// decodePayload is DecodePayload, telling what it left out.
func decodePayload(topic telemetry.Topic, payload []byte, rec *telemetry.Record) (refused, error) {
	rec.Topic = topic
	d := decoder{payload: payload}
	switch topic {
	case telemetry.TopicV:
		err := d.vehicleData(rec)
		return d.refused, err
	case telemetry.TopicAlerts:
		err := d.vehicleAlerts(rec)
		return d.refused, err
	case telemetry.TopicErrors:
		err := d.vehicleErrors(rec)
		return d.refused, err
	case telemetry.TopicConnectivity:
		return refused{}, d.vehicleConnectivity(rec)
	}
	return refused{}, fmt.Errorf("%w %q", ErrUnknownTopic, topic)
}

// memberKind is how a member of the Value oneof is encoded and what it
// becomes.
type memberKind uint8

const (
	memberString memberKind = iota + 1
	memberInt32
	memberInt64
	memberFloat
	memberDouble
	memberBool
	memberInvalid
	memberEnum
	memberLocation
	memberDoors
	memberTires
	memberTime
)

// valueMember describes one member of the Value oneof; the table of them,
// valueMembers, is generated from the specification.
type valueMember struct {
	name string
	kind memberKind
	enum *telemetry.EnumType // for memberEnum
}

// decoder holds what one DecodePayload call shares between messages.
type decoder struct {
	// payload is the caller's buffer, borrowed for the call only.
	payload []byte
	// arena is the private copy of payload that strings of the record
	// point into, made on first need.
	arena []byte
	// refused counts the items left out of the record.
	refused refused
}

// offset returns the position of b[0] in base. b must be a non-empty part
// of base.
func offset(base, b []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(base))))
}

// str returns b, a part of the payload, as a string that outlives the call:
// it points into the arena, never into the caller's buffer.
func (d *decoder) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if d.arena == nil {
		d.arena = make([]byte, len(d.payload))
		copy(d.arena, d.payload)
	}
	return unsafe.String(&d.arena[offset(d.payload, b)], len(b))
}

// reader walks the fields of one protobuf message. Its methods record the
// first error and make next report false from then on.
type reader struct {
	// base is the whole payload, for positions in errors. (A pointer to the
	// decoder here would make the decoder escape to the heap.)
	base []byte
	msg  string // message type, for errors
	b    []byte // what is left of the message
	at   []byte // the current field, from its tag
	num  protowire.Number
	typ  protowire.Type
	err  error
}

// The reader's methods come in two halves: a short path for the common
// one-byte tags, lengths and varints, and a slow path that handles the rest
// and says what is wrong. On an error the slow path also empties b, so that
// next stops.

// next reads the tag of the next field, reporting false at the end of the
// message or after an error.
func (r *reader) next() bool {
	if len(r.b) > 0 && r.b[0] < 0x80 && r.b[0] >= 1<<3 {
		r.at = r.b
		r.num, r.typ, r.b = protowire.Number(r.b[0]>>3), protowire.Type(r.b[0]&7), r.b[1:]
		return true
	}
	return r.nextSlow()
}

func (r *reader) nextSlow() bool {
	if len(r.b) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.err = fmt.Errorf("%w: %s at byte %d: tag: %w", ErrMalformedPayload, r.msg, offset(r.base, r.b), protowire.ParseError(n))
		r.b = nil
		return false
	}
	r.at = r.b
	r.num, r.typ, r.b = num, typ, r.b[n:]
	return true
}

// fail records what is wrong with the current field: what names the part
// that is wrong (may be empty), err the cause.
func (r *reader) fail(what string, err error) {
	if r.err == nil {
		if what != "" {
			what += ": "
		}
		r.err = fmt.Errorf("%w: %s field %d at byte %d: %s%w", ErrMalformedPayload, r.msg, r.num, offset(r.base, r.at), what, err)
	}
	r.b = nil
}

// wireTypeError reports a known field encoded with another wire type than
// its declaration demands. (Protobuf libraries treat such a field as an
// unknown one; we refuse it: a car never sends one, so it means corruption.)
type wireTypeError struct {
	got, want protowire.Type
}

func (e wireTypeError) Error() string {
	return "wire type " + wireTypeName(e.got) + ", want " + wireTypeName(e.want)
}

var wireTypeNames = [...]string{
	protowire.VarintType:     "varint",
	protowire.Fixed64Type:    "fixed64",
	protowire.BytesType:      "bytes",
	protowire.StartGroupType: "start group",
	protowire.EndGroupType:   "end group",
	protowire.Fixed32Type:    "fixed32",
}

func wireTypeName(t protowire.Type) string {
	if t >= 0 && int(t) < len(wireTypeNames) && wireTypeNames[t] != "" {
		return wireTypeNames[t]
	}
	return "reserved " + strconv.Itoa(int(t))
}

// want checks the wire type of the current field.
func (r *reader) want(t protowire.Type) bool {
	if r.typ == t {
		return true
	}
	r.fail("", wireTypeError{got: r.typ, want: t})
	return false
}

func (r *reader) varint() uint64 {
	if r.typ == protowire.VarintType && len(r.b) > 0 && r.b[0] < 0x80 {
		v := r.b[0]
		r.b = r.b[1:]
		return uint64(v)
	}
	return r.varintSlow()
}

func (r *reader) varintSlow() uint64 {
	if !r.want(protowire.VarintType) {
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail("varint", protowire.ParseError(n))
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed32() uint32 {
	if r.typ == protowire.Fixed32Type && len(r.b) >= 4 {
		v := binary.LittleEndian.Uint32(r.b)
		r.b = r.b[4:]
		return v
	}
	return uint32(r.fixedSlow(protowire.Fixed32Type))
}

func (r *reader) fixed64() uint64 {
	if r.typ == protowire.Fixed64Type && len(r.b) >= 8 {
		v := binary.LittleEndian.Uint64(r.b)
		r.b = r.b[8:]
		return v
	}
	return r.fixedSlow(protowire.Fixed64Type)
}

func (r *reader) fixedSlow(t protowire.Type) uint64 {
	if r.want(t) {
		r.fail(wireTypeName(t), io.ErrUnexpectedEOF)
	}
	return 0
}

// bytes returns the contents of a length-delimited field (nil on error).
func (r *reader) bytes() []byte {
	if r.typ == protowire.BytesType && len(r.b) > 0 {
		if m := int(r.b[0]); m < 0x80 && m < len(r.b) {
			v := r.b[1 : 1+m]
			r.b = r.b[1+m:]
			return v
		}
	}
	return r.bytesSlow()
}

func (r *reader) bytesSlow() []byte {
	if !r.want(protowire.BytesType) {
		return nil
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		r.fail("length", protowire.ParseError(n))
		return nil
	}
	r.b = r.b[n:]
	return v
}

// skip passes over a field this decoder does not know.
func (r *reader) skip() {
	n := protowire.ConsumeFieldValue(r.num, r.typ, r.b)
	if n < 0 {
		r.fail("unknown field", protowire.ParseError(n))
		return
	}
	r.b = r.b[n:]
}

// timestamp is a google.protobuf.Timestamp as it arrived.
type timestamp struct {
	seconds int64
	nanos   int32
}

// timestamp merges the Timestamp message b into ts, as protobuf merges a
// message field that appears twice.
func (d *decoder) timestamp(b []byte, ts *timestamp) error {
	r := reader{base: d.payload, msg: "Timestamp", b: b}
	for r.next() {
		switch r.num {
		case 1:
			ts.seconds = int64(r.varint())
		case 2:
			ts.nanos = int32(r.varint())
		default:
			r.skip()
		}
	}
	return r.err
}

// time returns ts as a time in UTC, or the zero time for a zero timestamp.
func (ts timestamp) time() time.Time {
	if ts.seconds == 0 && ts.nanos == 0 {
		return time.Time{}
	}
	return time.Unix(ts.seconds, int64(ts.nanos)).UTC()
}

// alertTime is time for alert timestamps, whose seconds may really be
// milliseconds.
func (ts timestamp) alertTime() time.Time {
	if ts.seconds >= millisThreshold {
		return time.UnixMilli(ts.seconds).UTC()
	}
	return ts.time()
}

// vehicleData decodes a Payload: data=1, created_at=2, vin=3, is_resend=4.
func (d *decoder) vehicleData(rec *telemetry.Record) error {
	var created timestamp
	r := reader{base: d.payload, msg: "Payload", b: d.payload}
	for r.next() {
		switch r.num {
		case 1:
			b := r.bytes()
			if r.err != nil {
				break
			}
			// A datum past MaxRecordItems is decoded into spare, and
			// left out.
			var spare telemetry.Datum
			dt := &spare
			if len(rec.Data) < MaxRecordItems {
				rec.Data = append(rec.Data, telemetry.Datum{})
				dt = &rec.Data[len(rec.Data)-1]
			}
			if !d.datumFast(b, dt) {
				if err := d.datum(b, dt); err != nil {
					return err
				}
			}
			switch {
			case dt.Field < 0 || int(dt.Field) > MaxFieldNumber:
				d.refused.unknownFields++
				if dt != &spare {
					rec.Data = rec.Data[:len(rec.Data)-1]
				}
			case dt == &spare:
				d.refused.excess++
			}
		case 2:
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, &created); err != nil {
					return err
				}
			}
		case 3:
			r.bytes() // the VIN comes from the client certificate
		case 4:
			rec.Resend = r.varint() != 0
		default:
			r.skip()
		}
	}
	rec.CreatedAt = created.time()
	return r.err
}

// valueState collects a Value as its members arrive, so that a Value (or a
// message member) that appears more than once merges as protobuf merges it.
type valueState struct {
	member   protowire.Number // last oneof member seen; 0 when none
	raw      uint64           // scalar members: varint or fixed bits
	str      []byte           // string member, in the caller's buffer
	lat, lon float64          // location
	bits     uint16           // doors, tires
	h, m, s  int32            // time
}

// datumFast decodes the Datum b into dt if it has the shape cars send: the
// key (a varint of one or two bytes), then a Value shorter than 128 bytes
// holding one member, or no member, or no Value at all. It reports false
// for any other shape, valid or not: datum then decodes it field by field,
// overwriting dt. The fuzz tests check that both agree.
func (d *decoder) datumFast(b []byte, dt *telemetry.Datum) bool {
	if len(b) < 2 || b[0] != 1<<3|byte(protowire.VarintType) {
		return false
	}
	var key uint64
	switch {
	case b[1] < 0x80:
		key, b = uint64(b[1]), b[2:]
	case len(b) > 2 && b[2] < 0x80:
		key, b = uint64(b[1]&0x7f)|uint64(b[2])<<7, b[3:]
	default:
		return false
	}
	if len(b) > 0 && (len(b) < 2 || b[0] != 2<<3|byte(protowire.BytesType) || int(b[1]) != len(b)-2) {
		return false
	}
	if len(b) == 0 {
		dt.Value = telemetry.Value{}
	} else if !d.valueFast(b[2:], &dt.Value) {
		return false
	}
	dt.Field = telemetry.Field(key)
	if dt.Value.Kind() == telemetry.KindStringValue {
		// Normalize returns values of other kinds unchanged.
		dt.Value = telemetry.Normalize(dt.Field, dt.Value)
	}
	return true
}

// valueFast decodes into v a Value message b that holds no member or
// exactly one member (a message member shorter than 128 bytes), reporting
// false for anything else.
func (d *decoder) valueFast(b []byte, v *telemetry.Value) bool {
	if len(b) == 0 {
		*v = telemetry.Value{}
		return true
	}
	var tag uint64
	switch {
	case b[0] < 0x80:
		tag, b = uint64(b[0]), b[1:]
	case len(b) > 1 && b[1] < 0x80:
		tag, b = uint64(b[0]&0x7f)|uint64(b[1])<<7, b[2:]
	default:
		return false
	}
	num, typ := tag>>3, protowire.Type(tag&7)
	if num >= uint64(len(valueMembers)) {
		return false
	}
	m := &valueMembers[num]
	var raw uint64
	switch m.kind {
	case memberDouble:
		if typ != protowire.Fixed64Type || len(b) != 8 {
			return false
		}
		*v = telemetry.FloatValue(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		return true
	case memberFloat:
		if typ != protowire.Fixed32Type || len(b) != 4 {
			return false
		}
		*v = telemetry.Float32Value(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		return true
	case memberInt32, memberInt64, memberBool, memberInvalid, memberEnum:
		var n int
		if typ != protowire.VarintType {
			return false
		}
		if raw, n = protowire.ConsumeVarint(b); n != len(b) {
			return false
		}
	case memberString:
		if typ != protowire.BytesType {
			return false
		}
		s, n := protowire.ConsumeBytes(b)
		if n != len(b) {
			return false
		}
		*v = telemetry.StringValue(d.str(s))
		return true
	case memberLocation, memberDoors, memberTires, memberTime:
		if typ != protowire.BytesType || len(b) == 0 || int(b[0]) != len(b)-1 {
			return false
		}
		st := valueState{member: protowire.Number(num)}
		if d.composite(m, b[1:], &st) != nil {
			return false
		}
		*v = st.value(d)
		return true
	default:
		return false
	}
	*v = scalarValue(m, raw)
	return true
}

// datum decodes a Datum (key=1, value=2) into dt.
func (d *decoder) datum(b []byte, dt *telemetry.Datum) error {
	var st valueState
	var key uint64
	r := reader{base: d.payload, msg: "Datum", b: b}
	for r.next() {
		switch r.num {
		case 1:
			key = r.varint()
		case 2:
			if b := r.bytes(); r.err == nil {
				if err := d.value(b, &st); err != nil {
					return err
				}
			}
		default:
			r.skip()
		}
	}
	if r.err != nil {
		return r.err
	}
	dt.Field = telemetry.Field(int32(key))
	dt.Value = telemetry.Normalize(dt.Field, st.value(d))
	return nil
}

// value merges the Value message b into st.
func (d *decoder) value(b []byte, st *valueState) error {
	r := reader{base: d.payload, msg: "Value", b: b}
	for r.next() {
		if r.num >= protowire.Number(len(valueMembers)) || valueMembers[r.num].kind == 0 {
			r.skip() // a member newer than our table
			continue
		}
		m := &valueMembers[r.num]
		switch m.kind {
		case memberString:
			st.str = r.bytes()
		case memberInt32, memberInt64, memberBool, memberInvalid, memberEnum:
			st.raw = r.varint()
		case memberFloat:
			st.raw = uint64(r.fixed32())
		case memberDouble:
			st.raw = r.fixed64()
		default:
			b := r.bytes()
			if r.err != nil {
				break
			}
			if st.member != r.num {
				// Another member was set: this one starts afresh.
				st.lat, st.lon, st.bits, st.h, st.m, st.s = 0, 0, 0, 0, 0, 0
			}
			if err := d.composite(m, b, st); err != nil {
				return err
			}
		}
		st.member = r.num
	}
	return r.err
}

// composite merges a message member of Value (location, doors, tires, time)
// into st.
func (d *decoder) composite(m *valueMember, b []byte, st *valueState) error {
	r := reader{base: d.payload, msg: m.name, b: b}
	for r.next() {
		switch m.kind {
		case memberLocation:
			switch r.num {
			case 1:
				st.lat = math.Float64frombits(r.fixed64())
			case 2:
				st.lon = math.Float64frombits(r.fixed64())
			default:
				r.skip()
			}
		case memberDoors, memberTires:
			n := 6
			if m.kind == memberTires {
				n = 10
			}
			if r.num < 1 || int(r.num) > n {
				r.skip()
				continue
			}
			bit := uint16(1) << (r.num - 1)
			if r.varint() != 0 {
				st.bits |= bit
			} else {
				st.bits &^= bit
			}
		case memberTime:
			switch r.num {
			case 1:
				st.h = int32(r.varint())
			case 2:
				st.m = int32(r.varint())
			case 3:
				st.s = int32(r.varint())
			default:
				r.skip()
			}
		}
	}
	return r.err
}

// value returns the Value st holds; a string goes to d's arena, since
// normalisation keeps the string a value was parsed from.
func (st *valueState) value(d *decoder) telemetry.Value {
	m := &valueMembers[st.member]
	switch m.kind {
	case memberString:
		return telemetry.StringValue(d.str(st.str))
	case memberLocation:
		return telemetry.LocationValue(st.lat, st.lon)
	case memberDoors:
		return telemetry.DoorsValue(telemetry.Doors(st.bits))
	case memberTires:
		return telemetry.TiresValue(telemetry.Tires(st.bits))
	case memberTime:
		return telemetry.TimeValue(st.h, st.m, st.s)
	}
	return scalarValue(m, st.raw)
}

// scalarValue returns the value of a scalar or enum member m whose varint
// or fixed-size bits are raw; the zero Value for other members.
func scalarValue(m *valueMember, raw uint64) telemetry.Value {
	switch m.kind {
	case memberInt32:
		return telemetry.IntValue(int64(int32(raw)))
	case memberInt64:
		return telemetry.IntValue(int64(raw))
	case memberFloat:
		return telemetry.Float32Value(math.Float32frombits(uint32(raw)))
	case memberDouble:
		return telemetry.FloatValue(math.Float64frombits(raw))
	case memberBool:
		return telemetry.BoolValue(raw != 0)
	case memberInvalid:
		// Any value of the member means invalid, as the reference server
		// reads it.
		return telemetry.InvalidValue()
	case memberEnum:
		return telemetry.EnumNumber(m.enum, int32(raw))
	}
	return telemetry.Value{}
}

// vehicleAlerts decodes VehicleAlerts: alerts=1, created_at=2, vin=3.
func (d *decoder) vehicleAlerts(rec *telemetry.Record) error {
	var created timestamp
	var audiences []telemetry.Audience // shared by the record's alerts
	r := reader{base: d.payload, msg: "VehicleAlerts", b: d.payload}
	for r.next() {
		switch r.num {
		case 1:
			b := r.bytes()
			if r.err != nil {
				break
			}
			if len(rec.Alerts) >= MaxRecordItems {
				// Decoded for its errors, then left out.
				var spare telemetry.Alert
				if err := d.alert(b, &spare, &audiences); err != nil {
					return err
				}
				audiences = audiences[:len(audiences)-len(spare.Audiences)]
				d.refused.excess++
				break
			}
			rec.Alerts = append(rec.Alerts, telemetry.Alert{})
			if err := d.alert(b, &rec.Alerts[len(rec.Alerts)-1], &audiences); err != nil {
				return err
			}
		case 2:
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, &created); err != nil {
					return err
				}
			}
		case 3:
			r.bytes() // the VIN comes from the client certificate
		default:
			r.skip()
		}
	}
	rec.CreatedAt = created.time()
	return r.err
}

// alert decodes a VehicleAlert: name=1, audiences=2, started_at=3,
// ended_at=4. Its audiences are appended to the record's shared slice.
func (d *decoder) alert(b []byte, a *telemetry.Alert, audiences *[]telemetry.Audience) error {
	var started, ended timestamp
	first := len(*audiences)
	r := reader{base: d.payload, msg: "VehicleAlert", b: b}
	for r.next() {
		switch r.num {
		case 1:
			a.Name = d.str(r.bytes())
		case 2:
			if r.typ != protowire.BytesType {
				*audiences = append(*audiences, audience(r.varint()))
				break
			}
			packed := r.bytes()
			for len(packed) > 0 {
				v, n := protowire.ConsumeVarint(packed)
				if n < 0 {
					r.fail("packed audiences", protowire.ParseError(n))
					break
				}
				*audiences = append(*audiences, audience(v))
				packed = packed[n:]
			}
		case 3, 4:
			ts := &started
			if r.num == 4 {
				ts = &ended
			}
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, ts); err != nil {
					return err
				}
			}
		default:
			r.skip()
		}
	}
	if n := len(*audiences); n > first {
		a.Audiences = (*audiences)[first:n:n]
	}
	a.StartedAt = started.alertTime()
	a.EndedAt = ended.alertTime()
	return r.err
}

// audience converts a wire audience; numbers we do not know are Unknown.
func audience(v uint64) telemetry.Audience {
	if n := int32(v); n >= 0 && n <= int32(telemetry.AudienceServiceFix) {
		return telemetry.Audience(n)
	}
	return telemetry.AudienceUnknown
}

// vehicleErrors decodes VehicleErrors: errors=1, created_at=2, vin=3.
func (d *decoder) vehicleErrors(rec *telemetry.Record) error {
	var created timestamp
	r := reader{base: d.payload, msg: "VehicleErrors", b: d.payload}
	for r.next() {
		switch r.num {
		case 1:
			b := r.bytes()
			if r.err != nil {
				break
			}
			if len(rec.Errors) >= MaxRecordItems {
				// Decoded for its errors, then left out.
				var spare telemetry.VehicleError
				if err := d.vehicleError(b, &spare); err != nil {
					return err
				}
				d.refused.excess++
				break
			}
			rec.Errors = append(rec.Errors, telemetry.VehicleError{})
			if err := d.vehicleError(b, &rec.Errors[len(rec.Errors)-1]); err != nil {
				return err
			}
		case 2:
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, &created); err != nil {
					return err
				}
			}
		case 3:
			r.bytes() // the VIN comes from the client certificate
		default:
			r.skip()
		}
	}
	rec.CreatedAt = created.time()
	return r.err
}

// vehicleError decodes a VehicleError: created_at=1, name=2, tags=3 (map
// entries key=1, value=2), body=4.
func (d *decoder) vehicleError(b []byte, e *telemetry.VehicleError) error {
	var created timestamp
	r := reader{base: d.payload, msg: "VehicleError", b: b}
	for r.next() {
		switch r.num {
		case 1:
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, &created); err != nil {
					return err
				}
			}
		case 2:
			e.Name = d.str(r.bytes())
		case 3:
			b := r.bytes()
			if r.err != nil {
				break
			}
			k, v, err := d.tag(b)
			if err != nil {
				return err
			}
			if e.Tags == nil {
				e.Tags = make(map[string]string)
			}
			e.Tags[k] = v
		case 4:
			e.Body = d.str(r.bytes())
		default:
			r.skip()
		}
	}
	e.CreatedAt = created.time()
	return r.err
}

// tag decodes one entry of the VehicleError tags map.
func (d *decoder) tag(b []byte) (key, value string, err error) {
	r := reader{base: d.payload, msg: "VehicleError.TagsEntry", b: b}
	for r.next() {
		switch r.num {
		case 1:
			key = d.str(r.bytes())
		case 2:
			value = d.str(r.bytes())
		default:
			r.skip()
		}
	}
	return key, value, r.err
}

// vehicleConnectivity decodes VehicleConnectivity: vin=1, connection_id=2,
// status=3, created_at=4, network_interface=5.
func (d *decoder) vehicleConnectivity(rec *telemetry.Record) error {
	var created timestamp
	c := &rec.Connectivity
	r := reader{base: d.payload, msg: "VehicleConnectivity", b: d.payload}
	for r.next() {
		switch r.num {
		case 1:
			r.bytes() // the VIN comes from the client certificate
		case 2:
			c.ConnectionID = d.str(r.bytes())
		case 3:
			c.Status = status(r.varint())
		case 4:
			if b := r.bytes(); r.err == nil {
				if err := d.timestamp(b, &created); err != nil {
					return err
				}
			}
		case 5:
			c.NetworkInterface = d.str(r.bytes())
		default:
			r.skip()
		}
	}
	c.CreatedAt = created.time()
	rec.CreatedAt = c.CreatedAt
	return r.err
}

// status converts a wire connection status; numbers we do not know are
// Unknown.
func status(v uint64) telemetry.Status {
	if n := int32(v); n >= 0 && n <= int32(telemetry.StatusDisconnected) {
		return telemetry.Status(n)
	}
	return telemetry.StatusUnknown
}
