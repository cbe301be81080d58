package simulate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleet2mqtt/fleet2mqtt/simulate/schema"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// FirstTypedField is the lowest field number that firmware has always sent
// typed. Older firmware sends the fields below it as strings.
const FirstTypedField telemetry.Field = 179

// Errors of the encoders, wrapped with the field concerned.
var (
	// ErrUnknownField is returned for a field the catalog does not know.
	ErrUnknownField = errors.New("field not in the catalog")
	// ErrKindMismatch is returned for a value whose kind the field cannot
	// carry, such as an enum value for a double field.
	ErrKindMismatch = errors.New("value kind does not suit the field")
)

// enumMembers maps a value enum's protocol name to the member of the Value
// oneof that carries it, read once from the schema's descriptor.
var enumMembers = func() map[string]protoreflect.FieldDescriptor {
	fields := (&schema.Value{}).ProtoReflect().Descriptor().Fields()
	m := make(map[string]protoreflect.FieldDescriptor, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() == protoreflect.EnumKind {
			m[string(fd.Enum().Name())] = fd
		}
	}
	return m
}()

// EncodeData returns the protobuf Payload of a V record: data with
// created_at and the VIN, as a car sends it. Each value is encoded by the
// field's kind (see EncodeValue); with legacy set, fields below
// FirstTypedField are sent as strings the way older firmware does.
func EncodeData(vin string, createdAt time.Time, data []telemetry.Datum, legacy bool) ([]byte, error) {
	p := &schema.Payload{
		Data:      make([]*schema.Datum, 0, len(data)),
		CreatedAt: timestamppb.New(createdAt),
		Vin:       vin,
	}
	for _, d := range data {
		v, err := EncodeValue(d.Field, d.Value, legacy)
		if err != nil {
			return nil, err
		}
		p.Data = append(p.Data, &schema.Datum{Key: schema.Field(d.Field), Value: v})
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return b, nil
}

// EncodeAlerts returns the protobuf VehicleAlerts of an alerts record. An
// alert with a zero EndedAt is sent as active (no ended_at).
func EncodeAlerts(vin string, createdAt time.Time, alerts []telemetry.Alert) ([]byte, error) {
	m := &schema.VehicleAlerts{CreatedAt: timestamppb.New(createdAt), Vin: vin}
	for _, a := range alerts {
		pa := &schema.VehicleAlert{Name: a.Name, StartedAt: timestamppb.New(a.StartedAt)}
		for _, aud := range a.Audiences {
			pa.Audiences = append(pa.Audiences, schema.Audience(aud))
		}
		if !a.EndedAt.IsZero() {
			pa.EndedAt = timestamppb.New(a.EndedAt)
		}
		m.Alerts = append(m.Alerts, pa)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode alerts: %w", err)
	}
	return b, nil
}

// EncodeErrors returns the protobuf VehicleErrors of an errors record.
func EncodeErrors(vin string, createdAt time.Time, errs []telemetry.VehicleError) ([]byte, error) {
	m := &schema.VehicleErrors{CreatedAt: timestamppb.New(createdAt), Vin: vin}
	for _, e := range errs {
		m.Errors = append(m.Errors, &schema.VehicleError{
			CreatedAt: timestamppb.New(e.CreatedAt),
			Name:      e.Name,
			Tags:      e.Tags,
			Body:      e.Body,
		})
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode errors: %w", err)
	}
	return b, nil
}

// markResend returns a copy of a V payload with is_resend set. Protobuf
// lets a later occurrence of a scalar field override an earlier one, so
// appending the field is enough.
func markResend(payload []byte) []byte {
	out := make([]byte, len(payload), len(payload)+2)
	copy(out, payload)
	out = protowire.AppendTag(out, 4, protowire.VarintType)
	return protowire.AppendVarint(out, 1)
}

// EncodeValue returns v as the Value message a car sends for field f.
// Integers become int_value, or long_value for fields of kind long; floats
// become double_value (float_value when they were single precision); enums
// the oneof member of the field's enum type; composite values their
// messages; an invalid value the invalid member; a value without kind an
// empty Value.
//
// With legacy set, a field below FirstTypedField whose kind older firmware
// sent as text (string, bool, number, enum, location) is sent as
// string_value: numbers in plain decimal, booleans as true/false, enums by
// short name ("D"), locations as "(37.412374 N, 122.145867 W)". Doors,
// tires and times have no text form and stay typed.
func EncodeValue(f telemetry.Field, v telemetry.Value, legacy bool) (*schema.Value, error) {
	info, ok := telemetry.Lookup(f)
	if !ok {
		return nil, fmt.Errorf("%v: %w", f, ErrUnknownField)
	}
	if legacy && f < FirstTypedField {
		if s, ok := legacyText(v); ok {
			return &schema.Value{Value: &schema.Value_StringValue{StringValue: s}}, nil
		}
	}
	out := &schema.Value{}
	switch v.Kind() {
	case telemetry.KindNone:
	case telemetry.KindInvalid:
		out.Value = &schema.Value_Invalid{Invalid: true}
	case telemetry.KindStringValue:
		out.Value = &schema.Value_StringValue{StringValue: v.Str()}
	case telemetry.KindIntValue:
		if info.Kind == telemetry.KindLong {
			out.Value = &schema.Value_LongValue{LongValue: v.Int()}
		} else {
			out.Value = &schema.Value_IntValue{IntValue: int32(v.Int())}
		}
	case telemetry.KindFloatValue:
		if isFloat32(v) {
			out.Value = &schema.Value_FloatValue{FloatValue: float32(v.Float())}
		} else {
			out.Value = &schema.Value_DoubleValue{DoubleValue: v.Float()}
		}
	case telemetry.KindBoolValue:
		out.Value = &schema.Value_BooleanValue{BooleanValue: v.Bool()}
	case telemetry.KindEnumValue:
		if info.Enum == nil {
			return nil, fmt.Errorf("%s: enum value %s: %w", info.Name, v.EnumName(), ErrKindMismatch)
		}
		fd, ok := enumMembers[info.Enum.Name]
		if !ok {
			return nil, fmt.Errorf("%s: no Value member carries enum %s: %w", info.Name, info.Enum.Name, ErrKindMismatch)
		}
		out.ProtoReflect().Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(v.EnumNumber())))
	case telemetry.KindLocationValue:
		lat, lon := v.Location()
		out.Value = &schema.Value_LocationValue{LocationValue: &schema.LocationValue{Latitude: lat, Longitude: lon}}
	case telemetry.KindDoorsValue:
		d := v.Doors()
		out.Value = &schema.Value_DoorValue{DoorValue: &schema.Doors{
			DriverFront:    d&telemetry.DriverFront != 0,
			DriverRear:     d&telemetry.DriverRear != 0,
			PassengerFront: d&telemetry.PassengerFront != 0,
			PassengerRear:  d&telemetry.PassengerRear != 0,
			TrunkFront:     d&telemetry.TrunkFront != 0,
			TrunkRear:      d&telemetry.TrunkRear != 0,
		}}
	case telemetry.KindTiresValue:
		t := v.Tires()
		out.Value = &schema.Value_TireLocationValue{TireLocationValue: &schema.TireLocation{
			FrontLeft:             t&telemetry.FrontLeft != 0,
			FrontRight:            t&telemetry.FrontRight != 0,
			RearLeft:              t&telemetry.RearLeft != 0,
			RearRight:             t&telemetry.RearRight != 0,
			SemiMiddleAxleLeft_2:  t&telemetry.SemiMiddleAxleLeft2 != 0,
			SemiMiddleAxleRight_2: t&telemetry.SemiMiddleAxleRight2 != 0,
			SemiRearAxleLeft:      t&telemetry.SemiRearAxleLeft != 0,
			SemiRearAxleRight:     t&telemetry.SemiRearAxleRight != 0,
			SemiRearAxleLeft_2:    t&telemetry.SemiRearAxleLeft2 != 0,
			SemiRearAxleRight_2:   t&telemetry.SemiRearAxleRight2 != 0,
		}}
	case telemetry.KindTimeValue:
		h, m, s := v.Time()
		out.Value = &schema.Value_TimeValue{TimeValue: &schema.Time{Hour: h, Minute: m, Second: s}}
	default:
		return nil, fmt.Errorf("%s: value kind %v: %w", info.Name, v.Kind(), ErrKindMismatch)
	}
	return out, nil
}

// isFloat32 reports whether a float value was made with single precision:
// its text (shortest at that precision) differs from the double's.
func isFloat32(v telemetry.Value) bool {
	f := v.Float()
	if f != float64(float32(f)) {
		return false
	}
	return string(v.AppendText(nil)) != strconv.FormatFloat(f, 'f', -1, 64)
}

// legacyText returns the text older firmware sends for v, and false for
// kinds it sent typed.
func legacyText(v telemetry.Value) (string, bool) {
	switch v.Kind() {
	case telemetry.KindStringValue:
		return v.Str(), true
	case telemetry.KindIntValue, telemetry.KindFloatValue, telemetry.KindBoolValue:
		return string(v.AppendText(nil)), true
	case telemetry.KindEnumValue:
		return v.EnumShort(), true
	case telemetry.KindLocationValue:
		lat, lon := v.Location()
		return string(AppendLegacyLocation(nil, lat, lon)), true
	}
	return "", false
}

// AppendLegacyLocation appends a position in the text form older firmware
// sends, "(37.412374 N, 122.145867 W)": six decimals, hemisphere letters.
func AppendLegacyLocation(dst []byte, latitude, longitude float64) []byte {
	dst = append(dst, '(')
	dst = appendHemisphere(dst, latitude, 'N', 'S')
	dst = append(dst, ", "...)
	dst = appendHemisphere(dst, longitude, 'E', 'W')
	return append(dst, ')')
}

func appendHemisphere(dst []byte, deg float64, pos, neg byte) []byte {
	h := pos
	if deg < 0 {
		h = neg
	}
	dst = strconv.AppendFloat(dst, math.Abs(deg), 'f', 6, 64)
	return append(dst, ' ', h)
}
