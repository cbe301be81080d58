package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/internal/gencheck"
)

// TestProtoFilesAreCurrent fails when the committed .proto files are not
// what genproto makes of the tables in telemetry/spec today.
func TestProtoFilesAreCurrent(t *testing.T) {
	s, err := loadSpec("../../../../telemetry/spec")
	if err != nil {
		t.Fatal(err)
	}
	files, err := buildFiles(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := gencheck.Compare(filepath.Join("../..", f.name), []byte(f.render()), "go generate ./simulate/schema/"); err != nil {
			t.Error(err)
		}
	}
}

func TestUniqueNames(t *testing.T) {
	enum := func(name string, values ...string) *enumType {
		e := &enumType{name: name}
		for i, v := range values {
			e.values = append(e.values, enumValue{name: v, number: int32(i)})
		}
		return e
	}
	tests := []struct {
		name    string
		files   []*protoFile
		want    []string // every enum value name after the rule, in order
		wantErr error
	}{
		{
			name:  "no collision",
			files: []*protoFile{{enums: []*enumType{enum("A", "AUnknown", "AOne"), enum("B", "BUnknown")}}},
			want:  []string{"AUnknown", "AOne", "BUnknown"},
		},
		{
			name: "later value is renamed, across files",
			files: []*protoFile{
				{enums: []*enumType{enum("Field", "Unknown", "Soc")}},
				{enums: []*enumType{enum("Audience", "Unknown", "Customer")}},
			},
			want: []string{"Unknown", "Soc", "AudienceUnknown", "Customer"},
		},
		{
			name: "value named like a type is renamed",
			files: []*protoFile{{
				enums:    []*enumType{enum("Field", "Unknown", "Time")},
				messages: []*message{{name: "Time"}},
			}},
			want: []string{"Unknown", "FieldTime"},
		},
		{
			name: "renamed value still taken",
			files: []*protoFile{{enums: []*enumType{
				enum("A", "X", "BX"),
				enum("B", "X"),
			}}},
			wantErr: errCollision,
		},
		{
			name:    "duplicate type",
			files:   []*protoFile{{enums: []*enumType{enum("A", "A0")}, messages: []*message{{name: "A"}}}},
			wantErr: errCollision,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := uniqueNames(tt.files)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got []string
			for _, f := range tt.files {
				for _, e := range f.enums {
					for _, v := range e.values {
						got = append(got, v.name)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("names = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLoadSpecRejects covers what genproto checks beyond telemetryspec: a
// Value member's type must be a scalar, a message it declares or a value
// enum.
func TestLoadSpecRejects(t *testing.T) {
	const (
		fields = "0\tUnknown\tstring\t\tnone\t\t\tother\tyes\tPlaceholder.\tPR\t\n" +
			"1\tGear\tenum:ShiftState\t\tsensor\tenum\t\tdrive\tno\tGear.\tTD\t\n"
		fieldEnum = "0\tUnknown\n1\tGear\n"
		enums     = "enum\tnumber\tname\nShiftState\t0\tShiftStateUnknown\nShiftState\t1\tShiftStateP\n"
	)
	tests := []struct {
		name    string
		members string
		wantErr error
	}{
		{"scalar, message and enum", "1\tstring_value\tstring\n2\tlocation_value\tLocationValue\n3\tshift_state_value\tShiftState\n", nil},
		{"unknown member type", "1\tgear_value\tGear\n", errUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range map[string]string{
				"fields.tsv":      fields,
				"field_enum.tsv":  fieldEnum,
				"value_oneof.tsv": tt.members,
				"value_enums.tsv": enums,
			} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := loadSpec(dir)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestGaps(t *testing.T) {
	got := gaps([]field{{number: 1}, {number: 4}, {number: 2}, {number: 7}})
	if want := []int32{3, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("gaps = %v, want %v", got, want)
	}
}
