package telemetry

import "strconv"

// Field identifies one vehicle signal: the protocol's Field enum number.
type Field int32

// String returns the signal's protocol name, such as "Soc", or "Field(300)"
// for a number the catalog does not know.
func (f Field) String() string {
	if info, ok := Lookup(f); ok {
		return info.Name
	}
	return "Field(" + strconv.Itoa(int(f)) + ")"
}

// Kind is the type a signal carries once normalised.
type Kind uint8

// Signal kinds, as listed in spec/fields.tsv.
const (
	KindString Kind = iota + 1
	KindBool
	KindInt  // 32-bit integer
	KindLong // 64-bit integer
	KindDouble
	KindEnum
	KindLocation
	KindDoors
	KindTireLocation
	KindTime
)

var kindNames = [...]string{
	KindString: "string", KindBool: "bool", KindInt: "int", KindLong: "long",
	KindDouble: "double", KindEnum: "enum", KindLocation: "location",
	KindDoors: "doors", KindTireLocation: "tire_location", KindTime: "time",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Numeric reports whether values of this kind are numbers.
func (k Kind) Numeric() bool { return k == KindInt || k == KindLong || k == KindDouble }

// FieldInfo describes one signal of the catalog.
type FieldInfo struct {
	Field Field
	Name  string
	Kind  Kind
	// Enum is the value enum of a KindEnum signal, nil otherwise.
	Enum *EnumType
	// Unit is the unit the car sends the value in ("" when unitless).
	// Distances and speeds stay in miles, temperatures in °C.
	Unit string
	// Component, DeviceClass and StateClass are the suggested Home Assistant
	// representation; Component "none" means the signal is not announced.
	Component   string
	DeviceClass string
	StateClass  string
	// Category groups signals for people (battery, charging, drive, ...).
	Category string
	// Diagnostic marks signals that belong in Home Assistant's diagnostic
	// section rather than among the car's primary entities.
	Diagnostic  bool
	Description string
}

// Lookup returns the catalog entry of f.
func Lookup(f Field) (FieldInfo, bool) {
	if f < 0 || int(f) >= len(catalog) {
		return FieldInfo{}, false
	}
	return catalog[f], true
}

// Catalog returns every known signal, ordered by field number. The slice is
// shared: do not modify it.
func Catalog() []FieldInfo { return catalog[:] }

var fieldsByName = func() map[string]Field {
	m := make(map[string]Field, len(catalog))
	for _, info := range catalog {
		m[info.Name] = info.Field
	}
	return m
}()

// FieldByName returns the field with the given protocol name, such as "Soc".
func FieldByName(name string) (Field, bool) {
	f, ok := fieldsByName[name]
	return f, ok
}

// EnumType is one of the protocol's value enums, such as ShiftState.
type EnumType struct {
	// Name is the protocol's enum type name.
	Name string
	// Prefix is what every value name of the enum starts with; the short
	// name of a value is its name without it ("ShiftStateD" → "D").
	Prefix string
	// Values are ordered by number.
	Values []EnumValue
}

// EnumValue is one value of an EnumType.
type EnumValue struct {
	Number int32
	Name   string // full protocol name, e.g. "DetailedChargeStateCharging"
	Short  string // name for people, e.g. "Charging"
}

// ByNumber returns the value with the given number.
func (e *EnumType) ByNumber(n int32) (EnumValue, bool) {
	// Enum numbers are dense from zero in practice; fall back to a scan.
	if n >= 0 && int(n) < len(e.Values) && e.Values[n].Number == n {
		return e.Values[n], true
	}
	for _, v := range e.Values {
		if v.Number == n {
			return v, true
		}
	}
	return EnumValue{}, false
}

// ByName returns the value whose full or short name is name. Older firmware
// sends enum signals as strings in either form.
func (e *EnumType) ByName(name string) (EnumValue, bool) {
	for _, v := range e.Values {
		if v.Name == name || v.Short == name {
			return v, true
		}
	}
	return EnumValue{}, false
}

// Enums returns every value enum of the protocol, ordered by name. The slice
// is shared: do not modify it.
func Enums() []*EnumType { return enums }

// EnumByName returns the value enum with the given protocol type name.
func EnumByName(name string) (*EnumType, bool) {
	for _, e := range enums {
		if e.Name == name {
			return e, true
		}
	}
	return nil, false
}
