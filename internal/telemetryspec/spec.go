// Package telemetryspec reads the specification tables in telemetry/spec:
// every signal's number, name, kind and Home Assistant hints, the members of
// the protocol's Value oneof, and every value enum. The three code
// generators that turn the tables into Go and protobuf source (the signal
// catalog of telemetry, the oneof table of ingest's decoder and the .proto
// files of simulate/schema) read them only through Load, so they agree on
// how a table is parsed and on what makes it invalid.
//
// The tables are tab separated, one row a line. Blank lines and lines
// starting with # are ignored, and a first line whose number column reads
// "number" is a header:
//
//	fields.tsv       number, name, kind, unit, ha_component, ha_device_class,
//	                 ha_state_class, category, diagnostic, description,
//	                 source, notes                  one row per signal
//	field_enum.tsv   number, name                   the protocol's Field enum
//	value_oneof.tsv  number, member, type           the members of Value.value
//	value_enums.tsv  enum, number, name             every value enum
//
// Load enforces what holds whatever a generator makes of the tables: column
// counts and integers, identifiers for every name, field numbers that run
// 0, 1, 2, ... in fields.tsv, a field_enum.tsv that lists exactly the
// numbers and names of fields.tsv, unique member names and numbers, enums
// whose first value is 0 and whose names and numbers are unique, and field
// kinds of the form enum:Name only for enums that value_enums.tsv declares.
// What a table may contain beyond that (the known field kinds, the member
// types a generator can encode) is the generator's to check.
package telemetryspec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Spec is the content of the four tables.
type Spec struct {
	// Fields lists every signal of fields.tsv; Fields[n].Number is n.
	Fields []Field
	// Members lists the members of the Value oneof in table order.
	Members []Member
	// Enums lists the value enums in the order of their first row.
	Enums []*Enum
}

// Field is one row of fields.tsv.
type Field struct {
	Number int
	Name   string
	// Kind is the table's kind, except that enum:Name reads as Kind "enum"
	// and Enum Name.
	Kind string
	Enum string
	Unit string
	// Component, DeviceClass and StateClass are the Home Assistant hints
	// (ha_component, ha_device_class, ha_state_class).
	Component   string
	DeviceClass string
	StateClass  string
	Category    string
	Diagnostic  bool
	Description string
}

// Member is one row of value_oneof.tsv: a member of the Value oneof and its
// protocol type (a protobuf scalar, a message or a value enum).
type Member struct {
	Number int
	Name   string
	Type   string
}

// Enum is one value enum of value_enums.tsv, its values in table order.
type Enum struct {
	Name   string
	Values []EnumValue
}

// EnumValue is one value of an Enum.
type EnumValue struct {
	Number int
	Name   string
}

// Enum returns the value enum called name, or nil.
func (s *Spec) Enum(name string) *Enum {
	for _, e := range s.Enums {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Errors of Load; each comes wrapped with the table and line it concerns.
var (
	errSyntax    = errors.New("syntax")
	errDuplicate = errors.New("duplicate")
	errNoZero    = errors.New("enum has no zero value first")
	errMismatch  = errors.New("field_enum.tsv disagrees with fields.tsv")
	errUnknown   = errors.New("unknown enum")
)

// The tables, as named inside the spec directory.
const (
	fieldsFile    = "fields.tsv"
	fieldEnumFile = "field_enum.tsv"
	membersFile   = "value_oneof.tsv"
	enumsFile     = "value_enums.tsv"
)

// Load reads and checks the four tables in dir.
func Load(dir string) (*Spec, error) {
	enumRows, err := readTable(filepath.Join(dir, enumsFile), 3, 1)
	if err != nil {
		return nil, err
	}
	fieldRows, err := readTable(filepath.Join(dir, fieldsFile), 12, 0)
	if err != nil {
		return nil, err
	}
	fieldEnumRows, err := readTable(filepath.Join(dir, fieldEnumFile), 2, 0)
	if err != nil {
		return nil, err
	}
	memberRows, err := readTable(filepath.Join(dir, membersFile), 3, 0)
	if err != nil {
		return nil, err
	}

	s := &Spec{}
	if s.Enums, err = enums(enumRows); err != nil {
		return nil, err
	}
	if s.Fields, err = s.fields(fieldRows); err != nil {
		return nil, err
	}
	if err := s.checkFieldEnum(fieldEnumRows); err != nil {
		return nil, err
	}
	if s.Members, err = members(memberRows); err != nil {
		return nil, err
	}
	return s, nil
}

func enums(rows []row) ([]*Enum, error) {
	var out []*Enum
	byName := map[string]*Enum{}
	names := map[*Enum]map[string]bool{}
	numbers := map[*Enum]map[int]bool{}
	for _, r := range rows {
		name, value := r.cols[0], r.cols[2]
		e := byName[name]
		if e == nil {
			if !isIdent(name) {
				return nil, fmt.Errorf("%s: enum %q: %w", r.pos, name, errSyntax)
			}
			if r.number != 0 {
				return nil, fmt.Errorf("%s: enum %s starts with %s = %d: %w", r.pos, name, value, r.number, errNoZero)
			}
			e = &Enum{Name: name}
			byName[name] = e
			names[e], numbers[e] = map[string]bool{}, map[int]bool{}
			out = append(out, e)
		}
		if !isIdent(value) {
			return nil, fmt.Errorf("%s: enum %s value %q: %w", r.pos, name, value, errSyntax)
		}
		if names[e][value] || numbers[e][r.number] {
			return nil, fmt.Errorf("%s: enum %s value %s = %d: %w", r.pos, name, value, r.number, errDuplicate)
		}
		names[e][value], numbers[e][r.number] = true, true
		e.Values = append(e.Values, EnumValue{Number: r.number, Name: value})
	}
	return out, nil
}

func (s *Spec) fields(rows []row) ([]Field, error) {
	var out []Field
	names := map[string]bool{}
	for _, r := range rows {
		c := r.cols
		f := Field{
			Number: r.number, Name: c[1], Kind: c[2], Unit: c[3],
			Component: c[4], DeviceClass: c[5], StateClass: c[6],
			Category: c[7], Description: c[9],
		}
		if f.Number != len(out) {
			return nil, fmt.Errorf("%s: field %s has number %d, want %d (numbers run 0, 1, 2, ...): %w", r.pos, f.Name, f.Number, len(out), errSyntax)
		}
		if !isIdent(f.Name) {
			return nil, fmt.Errorf("%s: field name %q: %w", r.pos, f.Name, errSyntax)
		}
		if names[f.Name] {
			return nil, fmt.Errorf("%s: field %s: %w", r.pos, f.Name, errDuplicate)
		}
		names[f.Name] = true
		switch c[8] {
		case "yes":
			f.Diagnostic = true
		case "no":
		default:
			return nil, fmt.Errorf("%s: field %s: diagnostic %q, want yes or no: %w", r.pos, f.Name, c[8], errSyntax)
		}
		if e, ok := strings.CutPrefix(f.Kind, "enum:"); ok {
			if s.Enum(e) == nil {
				return nil, fmt.Errorf("%s: field %s has kind %s, but %s declares no enum %s: %w", r.pos, f.Name, f.Kind, enumsFile, e, errUnknown)
			}
			f.Kind, f.Enum = "enum", e
		}
		out = append(out, f)
	}
	return out, nil
}

// checkFieldEnum makes sure field_enum.tsv, from which the wire schema's
// Field enum is built, names every field exactly as fields.tsv does.
func (s *Spec) checkFieldEnum(rows []row) error {
	for i, r := range rows {
		if i >= len(s.Fields) {
			return fmt.Errorf("%s: field %d %s is not in %s: %w", r.pos, r.number, r.cols[1], fieldsFile, errMismatch)
		}
		if f := s.Fields[i]; r.number != f.Number || r.cols[1] != f.Name {
			return fmt.Errorf("%s: row %d is %d %s, %s has %d %s: %w", r.pos, i+1, r.number, r.cols[1], fieldsFile, f.Number, f.Name, errMismatch)
		}
	}
	if len(rows) < len(s.Fields) {
		f := s.Fields[len(rows)]
		return fmt.Errorf("%s: field %d %s of %s is missing: %w", fieldEnumFile, f.Number, f.Name, fieldsFile, errMismatch)
	}
	return nil
}

func members(rows []row) ([]Member, error) {
	var out []Member
	names := map[string]bool{}
	numbers := map[int]bool{}
	for _, r := range rows {
		m := Member{Number: r.number, Name: r.cols[1], Type: r.cols[2]}
		if !isIdent(m.Name) {
			return nil, fmt.Errorf("%s: member %q: %w", r.pos, m.Name, errSyntax)
		}
		if !isIdent(m.Type) {
			return nil, fmt.Errorf("%s: member %s type %q: %w", r.pos, m.Name, m.Type, errSyntax)
		}
		if m.Number < 1 {
			return nil, fmt.Errorf("%s: member %s number %d, want 1 or more: %w", r.pos, m.Name, m.Number, errSyntax)
		}
		if names[m.Name] || numbers[m.Number] {
			return nil, fmt.Errorf("%s: member %s = %d: %w", r.pos, m.Name, m.Number, errDuplicate)
		}
		names[m.Name], numbers[m.Number] = true, true
		out = append(out, m)
	}
	return out, nil
}

// row is one line of a table; number is the integer of its number column.
type row struct {
	pos    string // file:line
	cols   []string
	number int
}

// readTable reads a table of exactly ncols columns whose column numCol is a
// 32-bit integer.
func readTable(path string, ncols, numCol int) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read spec table: %w", err)
	}
	defer f.Close()

	var rows []row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		pos := fmt.Sprintf("%s:%d", filepath.Base(path), line)
		cols := strings.Split(text, "\t")
		if len(cols) != ncols {
			return nil, fmt.Errorf("%s: want %d columns, have %d: %w", pos, ncols, len(cols), errSyntax)
		}
		if line == 1 && cols[numCol] == "number" {
			continue
		}
		n, err := strconv.ParseInt(cols[numCol], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: number %q: %w", pos, cols[numCol], errSyntax)
		}
		rows = append(rows, row{pos: pos, cols: cols, number: int(n)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return rows, nil
}

// isIdent reports whether s is an identifier in protobuf and Go: a letter
// or underscore, then letters, digits and underscores.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
