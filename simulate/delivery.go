package simulate

import (
	"bytes"
	"math"
	"math/bits"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Delivery accounting. Every record of a load run carries a marker: one
// signal (Odometer when the record has it, else its first double) whose
// value is markerBase plus the record's number at its car, so a message on
// the marker's topic names the record it came from. The other signals are
// counted per car and signal. A run is complete when, for every record a
// car had acknowledged, its marker arrived and every signal's topic
// received at least as many messages as the car had records acknowledged.
//
// Topics are matched by shape, not by one server's layout: the last level
// is the signal's name and one of the two levels before it is the VIN, as
// in fleet2mqtt's tesla/<VIN>/<Field> and the reference server's
// <base>/<VIN>/v/<Field>. Messages on any other topic (state objects,
// connection status) are counted apart.

// markerBase is the marker value of a car's first record (number 0).
const markerBase = 100_000

// markerValue is the marker of record n.
func markerValue(n int) float64 { return markerBase + float64(n) }

// markerSentinel is the marker's value while a template is built; its
// bytes locate the marker in every frame.
const markerSentinel = 987_654_321.125

// markerField returns the index in fields of the signal that carries the
// record's number, or -1 when no field can (no double among them).
func markerField(fields []telemetry.Field) int {
	first := -1
	for i, f := range fields {
		info, _ := telemetry.Lookup(f)
		if info.Kind != telemetry.KindDouble {
			continue
		}
		if f == telemetry.FieldOdometer {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

// deliveryCounter matches what an MQTT subscriber receives to the records
// of a load run. observe is called from the subscriber's one reading
// goroutine; the counters are read once the run settled.
type deliveryCounter struct {
	cars    map[string]int // VIN → car index
	fields  map[string]int // signal name → index in a record
	nfields int
	marker  int // index of the marker signal, -1 when there is none

	counts  []atomic.Int64    // per car and signal: car*nfields + signal
	markers [][]atomic.Uint64 // per car: bitset of records whose marker arrived
	dups    atomic.Int64      // markers that arrived more than once
	other   atomic.Int64      // messages on topics of no car's signal
	last    atomic.Int64      // arrival of the last message of a car's signal, Unix nanoseconds
}

// newDeliveryCounter counts for the cars (by VIN), each sending at most
// records records of fields.
func newDeliveryCounter(vins []string, fields []telemetry.Field, records int) *deliveryCounter {
	d := &deliveryCounter{
		cars:    make(map[string]int, len(vins)),
		fields:  make(map[string]int, len(fields)),
		nfields: len(fields),
		marker:  markerField(fields),
		counts:  make([]atomic.Int64, len(vins)*len(fields)),
		markers: make([][]atomic.Uint64, len(vins)),
	}
	for i, vin := range vins {
		d.cars[vin] = i
		d.markers[i] = make([]atomic.Uint64, (records+63)/64)
	}
	for i, f := range fields {
		d.fields[f.String()] = i
	}
	return d
}

// observe counts one message, which arrived at at.
func (d *deliveryCounter) observe(topic, payload []byte, at time.Time) {
	car, field, ok := d.match(topic)
	if !ok {
		d.other.Add(1)
		return
	}
	d.counts[car*d.nfields+field].Add(1)
	d.last.Store(at.UnixNano())
	if field != d.marker {
		return
	}
	v, ok := parseNumber(payload)
	n := int(v - markerBase)
	if !ok || v != math.Trunc(v) || n < 0 || n >= len(d.markers[car])*64 {
		return // not a marker of this run; counted with its signal only
	}
	w, bit := &d.markers[car][n/64], uint64(1)<<(n%64)
	if w.Or(bit)&bit != 0 {
		d.dups.Add(1)
	}
}

// lastArrival returns when the last message of a car's signal arrived,
// and false when none did.
func (d *deliveryCounter) lastArrival() (time.Time, bool) {
	n := d.last.Load()
	return time.Unix(0, n), n != 0
}

// match finds the car and signal of a topic.
func (d *deliveryCounter) match(topic []byte) (car, field int, ok bool) {
	i := bytes.LastIndexByte(topic, '/')
	if i < 0 {
		return 0, 0, false
	}
	if field, ok = d.fields[string(topic[i+1:])]; !ok {
		return 0, 0, false
	}
	rest := topic[:i]
	for range 2 {
		j := bytes.LastIndexByte(rest, '/')
		if car, ok = d.cars[string(rest[j+1:])]; ok {
			return car, field, true
		}
		if j < 0 {
			break
		}
		rest = rest[:j]
	}
	return 0, 0, false
}

// parseNumber reads a number from a plain payload (80, 65.5) or from the
// first number in a JSON one ({"value":80}).
func parseNumber(p []byte) (float64, bool) {
	if v, err := strconv.ParseFloat(string(p), 64); err == nil {
		return v, true
	}
	start := bytes.IndexAny(p, "-0123456789")
	if start < 0 {
		return 0, false
	}
	end := start + 1
	for end < len(p) && bytes.IndexByte([]byte("0123456789.eE+-"), p[end]) >= 0 {
		end++
	}
	v, err := strconv.ParseFloat(string(p[start:end]), 64)
	return v, err == nil
}

// DeliveryResult is the accounting of what the subscriber received against
// what the cars had acknowledged.
type DeliveryResult struct {
	// MarkerField is the signal whose value numbers the records; empty
	// when the records have no double signal (then only counts are
	// compared).
	MarkerField string `json:"marker_field,omitempty"`
	// Expected is the acknowledged records times the signals per record.
	Expected int64 `json:"expected_messages"`
	// Delivered counts, per car and signal, the messages that arrived, at
	// most one per acknowledged record.
	Delivered int64 `json:"delivered_messages"`
	// Ratio is Delivered ÷ Expected.
	Ratio float64 `json:"delivered_ratio"`
	// RecordsMissing are acknowledged records whose marker did not arrive.
	RecordsMissing int64 `json:"records_missing"`
	// Extra are messages beyond one per record and signal (records sent
	// again after a lost acknowledgement are published again).
	Extra int64 `json:"extra_messages"`
	// Other are messages on topics that are no car's signal (state
	// objects, connection status).
	Other int64 `json:"other_messages"`
}

// Complete reports whether every acknowledged record arrived whole.
func (r *DeliveryResult) Complete() bool {
	return r.Delivered == r.Expected && r.RecordsMissing == 0
}

// result compares the counts with the records each car had acknowledged
// (acked[car] is a bitset by record number).
func (d *deliveryCounter) result(fieldNames func(int) string, acked [][]uint64) *DeliveryResult {
	r := &DeliveryResult{Other: d.other.Load()}
	if d.marker >= 0 {
		r.MarkerField = fieldNames(d.marker)
	}
	for car, bits := range acked {
		var n int64
		for i, w := range bits {
			n += int64(popcount(w))
			if d.marker >= 0 && i < len(d.markers[car]) {
				r.RecordsMissing += int64(popcount(w &^ d.markers[car][i].Load()))
			} else if d.marker >= 0 {
				r.RecordsMissing += int64(popcount(w))
			}
		}
		for f := range d.nfields {
			got := d.counts[car*d.nfields+f].Load()
			r.Expected += n
			r.Delivered += min(got, n)
			r.Extra += max(got-n, 0)
		}
	}
	if r.Expected > 0 {
		r.Ratio = round(float64(r.Delivered)/float64(r.Expected), 4)
	}
	return r
}

func popcount(w uint64) int { return bits.OnesCount64(w) }
