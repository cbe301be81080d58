package telemetryspec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRepositoryTables reads the real tables and checks a few facts of
// the protocol that every generator relies on.
func TestLoadRepositoryTables(t *testing.T) {
	s, err := Load("../../telemetry/spec")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Fields) < 200 || s.Fields[0].Name != "Unknown" {
		t.Errorf("fields: %d, first %+v; want Unknown first and over 200 signals", len(s.Fields), s.Fields[0])
	}
	for i, f := range s.Fields {
		if f.Number != i {
			t.Fatalf("Fields[%d] has number %d", i, f.Number)
		}
	}
	if f := s.Fields[4]; f.Name != "VehicleSpeed" || f.Kind != "double" {
		t.Errorf("field 4 = %+v, want VehicleSpeed of kind double", f)
	}
	if m := s.Members[0]; m.Number != 1 || m.Name != "string_value" || m.Type != "string" {
		t.Errorf("first member = %+v, want 1 string_value string", m)
	}
	e := s.Enum("ShiftState")
	if e == nil || e.Values[0].Number != 0 {
		t.Fatalf("ShiftState = %+v, want an enum starting at 0", e)
	}
	if s.Enum("NoSuchEnum") != nil {
		t.Error("Enum found an enum the tables do not declare")
	}
	var enumFields int
	for _, f := range s.Fields {
		if f.Kind == "enum" {
			enumFields++
			if s.Enum(f.Enum) == nil {
				t.Errorf("field %s: enum %q not found", f.Name, f.Enum)
			}
		}
	}
	if enumFields == 0 {
		t.Error("no field of kind enum:Name was read as kind enum")
	}
}

func TestLoadRejects(t *testing.T) {
	const (
		header    = "number\tname\tkind\tunit\tha_component\tha_device_class\tha_state_class\tcategory\tdiagnostic\tdescription\tsource\tnotes\n"
		unknown   = "0\tUnknown\tstring\t\tnone\t\t\tother\tyes\tPlaceholder.\tPR\t\n"
		gear      = "1\tGear\tenum:ShiftState\t\tsensor\tenum\t\tdrive\tno\tGear.\tTD\t\n"
		fields    = header + unknown + gear
		fieldEnum = "0\tUnknown\n1\tGear\n"
		members   = "1\tstring_value\tstring\n2\tshift_state_value\tShiftState\n"
		enums     = "enum\tnumber\tname\nShiftState\t0\tShiftStateUnknown\nShiftState\t1\tShiftStateP\n"
	)
	tests := []struct {
		name                              string
		fields, fieldEnum, members, enums string
		wantErr                           error
		wantIn                            string // part of the message
	}{
		{"valid", fields, fieldEnum, members, enums, nil, ""},
		{"comments and blank lines", fields + "\n# a comment\n", "# Field\n" + fieldEnum + "\n", members, enums, nil, ""},
		{"bad number", header + unknown + "x" + gear[1:], fieldEnum, members, enums, errSyntax, "fields.tsv:3"},
		{"missing column", fields, "0\tUnknown\n1\n", members, enums, errSyntax, "field_enum.tsv:2"},
		{"bad identifier", header + unknown + strings.Replace(gear, "Gear", "Gear shift", 1), "0\tUnknown\n1\tGear shift\n", members, enums, errSyntax, "Gear shift"},
		{"field numbers skip", header + unknown + "2" + gear[1:], fieldEnum, members, enums, errSyntax, "want 1"},
		{"duplicate field name", header + unknown + "1" + unknown[1:], "0\tUnknown\n1\tUnknown\n", members, enums, errDuplicate, "fields.tsv:3"},
		{"diagnostic neither yes nor no", header + unknown + strings.Replace(gear, "\tno\t", "\tmaybe\t", 1), fieldEnum, members, enums, errSyntax, "maybe"},
		{"field kind names unknown enum", header + unknown + strings.Replace(gear, "ShiftState", "Gearbox", 1), fieldEnum, members, enums, errUnknown, "Gearbox"},
		{"field enum renames a field", fields, "0\tUnknown\n1\tGearbox\n", members, enums, errMismatch, "field_enum.tsv:2"},
		{"field enum lacks a field", fields, "0\tUnknown\n", members, enums, errMismatch, "Gear"},
		{"field enum has an extra field", fields, fieldEnum + "2\tSoc\n", members, enums, errMismatch, "Soc"},
		{"duplicate member number", fields, fieldEnum, "1\tstring_value\tstring\n1\tint_value\tint32\n", enums, errDuplicate, "value_oneof.tsv:2"},
		{"duplicate member name", fields, fieldEnum, "1\tstring_value\tstring\n2\tstring_value\tint32\n", enums, errDuplicate, "string_value"},
		{"member number zero", fields, fieldEnum, "0\tstring_value\tstring\n", enums, errSyntax, "value_oneof.tsv:1"},
		{"enum without zero first", fields, fieldEnum, members, "ShiftState\t1\tShiftStateP\nShiftState\t0\tShiftStateUnknown\n", errNoZero, "value_enums.tsv:1"},
		{"duplicate enum number", fields, fieldEnum, members, enums + "ShiftState\t1\tShiftStateR\n", errDuplicate, "value_enums.tsv:4"},
		{"duplicate enum value name", fields, fieldEnum, members, enums + "ShiftState\t2\tShiftStateP\n", errDuplicate, "ShiftStateP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range map[string]string{
				fieldsFile:    tt.fields,
				fieldEnumFile: tt.fieldEnum,
				membersFile:   tt.members,
				enumsFile:     tt.enums,
			} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantIn)
			}
		})
	}
}

func TestLoadMissingTable(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want a missing file", err)
	}
}
