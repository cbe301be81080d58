package main

import (
	"bufio"
	"bytes"
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// The documentation is checked against the code, so that it cannot drift:
// docs/configuration.md must list every configuration key (and no key that
// does not exist) with its true default, and every flag of serve; the
// README must name every command; relative links in the README and docs/
// must lead to files that exist.

const (
	configDoc = "../../docs/configuration.md"
	readme    = "../../README.md"
	docsDir   = "../../docs"
)

// configKey is one key of the configuration file.
type configKey struct {
	path string        // dotted path: mqtt.embedded.tls.listen, mqtt.embedded.users[].name
	typ  reflect.Type  // the Go type the key decodes into
	def  reflect.Value // its default; invalid for keys inside list items
}

// textUnmarshaler is implemented by types that decode from one scalar.
var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// configKeys lists every key of the configuration file that holds a value
// (sections, such as mqtt.embedded, are not keys themselves), in the order
// of the structs, walking the yaml tags as gopkg.in/yaml.v3 does:
// ",inline" merges a struct's keys into its parent, "-" and unexported
// fields are skipped, a field without a tag is its name in lower case.
// Lists of structs contribute the list key and, below "<list>[]", the keys
// of an item.
func configKeys(t reflect.Type, def reflect.Value, prefix string) []configKey {
	var keys []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue // yaml.v3 skips private fields, but not embedded ones
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		var fv reflect.Value
		if def.IsValid() {
			fv = def.Field(i)
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			keys = append(keys, configKeys(f.Type, fv, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := prefix + name
		if !isLeaf(f.Type) {
			keys = append(keys, configKeys(f.Type, fv, path+".")...) // a section
			continue
		}
		keys = append(keys, configKey{path: path, typ: f.Type, def: fv})
		if ft := f.Type; ft.Kind() == reflect.Slice && !isLeaf(ft.Elem()) {
			keys = append(keys, configKeys(ft.Elem(), reflect.Value{}, path+"[].")...)
		}
	}
	return keys
}

// isLeaf reports whether a value of t is written as one YAML value (or a
// list) rather than as a section of keys.
func isLeaf(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return true
	}
	return reflect.PointerTo(t).Implements(textUnmarshaler)
}

// docRow is one row of a key table in configuration.md.
type docRow struct {
	line    int
	key     string // the first cell's code span
	defCell string // the second cell, trimmed
	cells   int
}

// docRows reads the key tables of configuration.md: the tables whose
// header row is | key | default | meaning |. Every row of them must start
// with the key as one code span.
func docRows(t *testing.T, path string) []docRow {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		rows    []docRow
		inTable bool // inside a table, past its header
		isKeys  bool // that table is a key table
	)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		if !inTable {
			inTable = true
			isKeys = len(cells) >= 1 && cells[0] == "key"
			continue
		}
		if !isKeys || strings.Trim(line, "|-: ") == "" {
			continue // another table, or the header's separator row
		}
		key, ok := codeSpan(cells[0])
		if !ok {
			t.Errorf("configuration.md:%d: the first cell of a key table row must be the key as one code span, got %q", n, cells[0])
			continue
		}
		row := docRow{line: n, key: key, cells: len(cells)}
		if len(cells) > 1 {
			row.defCell = cells[1]
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// splitRow splits a Markdown table row into its trimmed cells. Pipes
// inside code spans or escaped as \| do not split.
func splitRow(line string) []string {
	line = strings.TrimPrefix(strings.TrimSuffix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	code := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
			continue
		case c == '`':
			code = !code
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// Keys whose default depends on the environment: their default cell is
// prose, not a literal.
var proseDefaults = map[string]bool{
	"data_dir": true, // $FLEET2MQTT_DATA_DIR, $XDG_DATA_HOME, the home directory
}

func TestConfigurationDocListsEveryKey(t *testing.T) {
	keys := configKeys(reflect.TypeFor[config.Config](), reflect.ValueOf(config.Default()), "")
	if len(keys) < 40 {
		t.Fatalf("found only %d configuration keys; the walk over Config is broken", len(keys))
	}
	rows := docRows(t, configDoc)
	documented := make(map[string]int)
	for _, r := range rows {
		if prev, ok := documented[r.key]; ok {
			t.Errorf("configuration.md:%d: %s is documented twice (first on line %d)", r.line, r.key, prev)
		}
		documented[r.key] = r.line
	}
	exists := make(map[string]bool)
	for _, k := range keys {
		exists[k.path] = true
		if _, ok := documented[k.path]; !ok {
			t.Errorf("configuration.md: key %s is not documented: add a row | `%s` | default | meaning |", k.path, k.path)
		}
	}
	for _, r := range rows {
		if !exists[r.key] {
			t.Errorf("configuration.md:%d: %s is documented but is not a configuration key", r.line, r.key)
		}
	}
}

func TestConfigurationDocDefaults(t *testing.T) {
	keys := configKeys(reflect.TypeFor[config.Config](), reflect.ValueOf(config.Default()), "")
	byPath := make(map[string]configKey, len(keys))
	for _, k := range keys {
		byPath[k.path] = k
	}
	for _, r := range docRows(t, configDoc) {
		k, ok := byPath[r.key]
		if !ok {
			continue // reported by TestConfigurationDocListsEveryKey
		}
		if r.cells != 3 {
			t.Errorf("configuration.md:%d: %s: want 3 cells (key, default, meaning), got %d", r.line, r.key, r.cells)
			continue
		}
		switch {
		case !k.def.IsValid(): // a key of a list item: no default of its own
			if r.defCell != "—" {
				t.Errorf("configuration.md:%d: %s is a key of a list item: its default cell must be —, not %q", r.line, r.key, r.defCell)
			}
			continue
		case proseDefaults[r.key]:
			continue
		}
		lit, ok := codeSpan(r.defCell)
		if !ok {
			t.Errorf("configuration.md:%d: %s: the default must be one code span holding the YAML value, such as `30s` or `\"\"`; got %q", r.line, r.key, r.defCell)
			continue
		}
		got, err := decodeLiteral(lit, k.typ)
		if err != nil {
			t.Errorf("configuration.md:%d: %s: default %s does not decode as %v: %v", r.line, r.key, lit, k.typ, err)
			continue
		}
		if !sameValue(got, k.def) {
			t.Errorf("configuration.md:%d: %s: documented default %s, but the default is %v", r.line, r.key, lit, k.def.Interface())
		}
	}
}

// decodeLiteral decodes a YAML value into a value of type t, as the
// configuration file's decoder would.
func decodeLiteral(lit string, t reflect.Type) (reflect.Value, error) {
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: t, Tag: `yaml:"v"`}}))
	if err := yaml.Unmarshal([]byte("v: "+lit), holder.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return holder.Elem().Field(0), nil
}

// codeSpan returns the content of a cell that is exactly one code span.
func codeSpan(cell string) (string, bool) {
	if len(cell) < 2 || cell[0] != '`' || cell[len(cell)-1] != '`' || strings.Count(cell, "`") != 2 {
		return "", false
	}
	return cell[1 : len(cell)-1], true
}

// sameValue is reflect.DeepEqual, except that a nil and an empty slice are
// the same default.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && b.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func TestConfigKeysWalk(t *testing.T) {
	type item struct {
		Name string `yaml:"name"`
	}
	type inner struct {
		Deep  int    `yaml:"deep"`
		NoTag string // yaml.v3: the lower-case field name
	}
	type embedded struct {
		Merged bool `yaml:"merged"`
	}
	type cfg struct {
		embedded `yaml:",inline"`
		Plain    string   `yaml:"plain,omitempty"`
		Skipped  string   `yaml:"-"`
		hidden   string   // unexported: not a key
		Inner    inner    `yaml:"inner"`
		Items    []item   `yaml:"items"`
		Names    []string `yaml:"names"`
	}
	var got []string
	for _, k := range configKeys(reflect.TypeFor[cfg](), reflect.ValueOf(cfg{hidden: "x"}), "") {
		got = append(got, k.path)
	}
	want := []string{"merged", "plain", "inner.deep", "inner.notag", "items", "items[].name", "names"}
	if !slices.Equal(got, want) {
		t.Errorf("configKeys = %q, want %q", got, want)
	}
}

func TestSplitRow(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"| `a` | `1` | x |", []string{"`a`", "`1`", "x"}},
		{"| `a` | `[na, eu]` | one \\| two |", []string{"`a`", "`[na, eu]`", "one | two"}},
		{"| `a` | `x|y` | z |", []string{"`a`", "`x|y`", "z"}},
	}
	for _, tt := range tests {
		if got := splitRow(tt.line); !slices.Equal(got, tt.want) {
			t.Errorf("splitRow(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

// flagNames runs `fleet2mqtt <command> -h` and returns the names of the
// flags it prints.
func flagNames(t *testing.T, command string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{command, "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("fleet2mqtt %s -h: exit %d: %s", command, code, stderr.String())
	}
	var names []string
	for line := range strings.Lines(stdout.String() + stderr.String()) {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
			names = append(names, strings.TrimSpace(name))
		}
	}
	if len(names) == 0 {
		t.Fatalf("fleet2mqtt %s -h printed no flags", command)
	}
	return names
}

func TestConfigurationDocListsServeFlags(t *testing.T) {
	raw, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range flagNames(t, "serve") {
		if !bytes.Contains(raw, []byte("`-"+name)) {
			t.Errorf("configuration.md does not document the flag -%s of serve (as `-%s …`)", name, name)
		}
	}
}

func TestReadmeNamesEveryCommand(t *testing.T) {
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !bytes.Contains(raw, []byte("fleet2mqtt "+c.name)) {
			t.Errorf("README.md does not mention the command `fleet2mqtt %s`", c.name)
		}
	}
}

// docLink matches the target of a Markdown link or image, or of an HTML
// src or href attribute.
var docLink = regexp.MustCompile(`\]\(([^)\s]+)\)|(?:src|href)="([^"]+)"`)

func TestDocLinksResolve(t *testing.T) {
	files := []string{readme}
	docs, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, docs...)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docLink.FindAllSubmatch(raw, -1) {
			link := string(m[1]) + string(m[2])
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, fragment, _ := strings.Cut(link, "#")
			path := file
			if target != "" {
				path = filepath.Join(filepath.Dir(file), filepath.FromSlash(target))
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link to %s: %v", filepath.Base(file), link, err)
					continue
				}
			}
			if fragment != "" && strings.HasSuffix(path, ".md") && !slices.Contains(anchors(t, path), fragment) {
				t.Errorf("%s: link to %s: no heading makes the anchor #%s", filepath.Base(file), link, fragment)
			}
		}
	}
}

// anchors returns the anchors GitHub makes for the headings of a Markdown
// file: lower case, spaces as hyphens, punctuation other than - and _
// dropped.
func anchors(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fence := false
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}
