// Command gencatalog turns the specification tables in telemetry/spec into
// catalog_gen.go: the field catalog and every value enum, so that the
// telemetry package knows each signal's kind, unit and Home Assistant hints
// without reading files at run time.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

func main() {
	spec := flag.String("spec", "spec", "directory holding fields.tsv and value_enums.tsv")
	out := flag.String("out", "catalog_gen.go", "file to write")
	flag.Parse()

	enums, err := readEnums(filepath.Join(*spec, "value_enums.tsv"))
	if err != nil {
		log.Fatal(err)
	}
	fields, err := readFields(filepath.Join(*spec, "fields.tsv"), enums)
	if err != nil {
		log.Fatal(err)
	}
	src, err := render(fields, enums)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

type enumValue struct {
	number int
	name   string
	short  string
}

type enum struct {
	name   string
	prefix string
	values []enumValue
}

type field struct {
	number                             int
	name, kind, enum, unit             string
	component, deviceClass, stateClass string
	category, description              string
	diagnostic                         bool
}

func readTSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		rows = append(rows, strings.Split(line, "\t"))
	}
	return rows, sc.Err()
}

func readEnums(path string) (map[string]*enum, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	enums := map[string]*enum{}
	for i, r := range rows[1:] {
		if len(r) < 3 {
			return nil, fmt.Errorf("%s:%d: want 3 columns, got %d", path, i+2, len(r))
		}
		n, err := strconv.Atoi(r[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+2, err)
		}
		e := enums[r[0]]
		if e == nil {
			e = &enum{name: r[0]}
			enums[r[0]] = e
		}
		e.values = append(e.values, enumValue{number: n, name: r[2]})
	}
	for _, e := range enums {
		sort.Slice(e.values, func(i, j int) bool { return e.values[i].number < e.values[j].number })
		e.prefix = commonWordPrefix(e.values)
		for i := range e.values {
			e.values[i].short = shortName(strings.TrimPrefix(e.values[i].name, e.prefix))
		}
	}
	return enums, nil
}

// shortName keeps a short name from reading "None": Home Assistant takes
// the payload None for "no valid value", so LaneAssistLevelNone and its like
// are published as "none".
func shortName(s string) string {
	if s == "None" {
		return "none"
	}
	return s
}

// commonWordPrefix is the longest prefix shared by every value name that ends
// at a CamelCase word boundary and leaves a non-empty rest for each name, so
// ShiftStateD becomes D and FollowDistance3 becomes 3.
func commonWordPrefix(values []enumValue) string {
	prefix := values[0].name
	for _, v := range values[1:] {
		for !strings.HasPrefix(v.name, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	for len(prefix) > 0 {
		ok := true
		for _, v := range values {
			rest := v.name[len(prefix):]
			if rest == "" || !(unicode.IsUpper(rune(rest[0])) || unicode.IsDigit(rune(rest[0]))) {
				ok = false
				break
			}
		}
		if ok {
			return prefix
		}
		prefix = prefix[:len(prefix)-1]
	}
	return ""
}

func readFields(path string, enums map[string]*enum) ([]field, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	var fields []field
	for i, r := range rows[1:] {
		if len(r) < 10 {
			return nil, fmt.Errorf("%s:%d: want at least 10 columns, got %d", path, i+2, len(r))
		}
		n, err := strconv.Atoi(r[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+2, err)
		}
		f := field{
			number: n, name: r[1], kind: r[2], unit: r[3],
			component: r[4], deviceClass: r[5], stateClass: r[6],
			category: r[7], diagnostic: r[8] == "yes", description: r[9],
		}
		if e, ok := strings.CutPrefix(f.kind, "enum:"); ok {
			if enums[e] == nil {
				return nil, fmt.Errorf("%s:%d: field %s names unknown enum %q", path, i+2, f.name, e)
			}
			f.kind, f.enum = "enum", e
		}
		if _, ok := kinds[f.kind]; !ok {
			return nil, fmt.Errorf("%s:%d: field %s has unknown kind %q", path, i+2, f.name, f.kind)
		}
		if f.number != len(fields) {
			return nil, fmt.Errorf("%s:%d: field numbers must run 0, 1, 2, ...; got %d", path, i+2, f.number)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

var kinds = map[string]string{
	"string":        "KindString",
	"bool":          "KindBool",
	"int":           "KindInt",
	"long":          "KindLong",
	"double":        "KindDouble",
	"enum":          "KindEnum",
	"location":      "KindLocation",
	"doors":         "KindDoors",
	"tire_location": "KindTireLocation",
	"time":          "KindTime",
}

func render(fields []field, enums map[string]*enum) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by gencatalog from spec/fields.tsv and spec/value_enums.tsv. DO NOT EDIT.\n\npackage telemetry\n\n")

	names := make([]string, 0, len(enums))
	for n := range enums {
		names = append(names, n)
	}
	sort.Strings(names)

	b.WriteString("// Value enums, one variable each, named after the protocol's enum type.\nvar (\n")
	for _, n := range names {
		e := enums[n]
		fmt.Fprintf(&b, "\tEnum%s = &EnumType{Name: %q, Prefix: %q, Values: []EnumValue{\n", n, n, e.prefix)
		for _, v := range e.values {
			fmt.Fprintf(&b, "\t\t{Number: %d, Name: %q, Short: %q},\n", v.number, v.name, v.short)
		}
		b.WriteString("\t}}\n")
	}
	b.WriteString(")\n\n")

	b.WriteString("// enums lists every value enum by name.\nvar enums = []*EnumType{\n")
	for _, n := range names {
		fmt.Fprintf(&b, "\tEnum%s,\n", n)
	}
	b.WriteString("}\n\n")

	b.WriteString("// Field numbers, named as in the protocol's Field enum.\nconst (\n")
	for _, f := range fields {
		fmt.Fprintf(&b, "\tField%s Field = %d\n", f.name, f.number)
	}
	b.WriteString(")\n\n")
	fmt.Fprintf(&b, "// MaxField is the highest field number the catalog knows.\nconst MaxField Field = %d\n\n", len(fields)-1)

	b.WriteString("// catalog is indexed by field number.\nvar catalog = [...]FieldInfo{\n")
	for _, f := range fields {
		fmt.Fprintf(&b, "\t{Field: %d, Name: %q, Kind: %s, ", f.number, f.name, kinds[f.kind])
		if f.enum != "" {
			fmt.Fprintf(&b, "Enum: Enum%s, ", f.enum)
		}
		fmt.Fprintf(&b, "Unit: %q, Component: %q, DeviceClass: %q, StateClass: %q, Category: %q, Diagnostic: %t, Description: %q},\n",
			f.unit, f.component, f.deviceClass, f.stateClass, f.category, f.diagnostic, f.description)
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}
