package addon

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The add-on's files (config.yaml, translations, the Dockerfiles) and this
// package must agree; these tests keep them so.

type addonConfig struct {
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	Slug        string            `yaml:"slug"`
	Description string            `yaml:"description"`
	URL         string            `yaml:"url"`
	Arch        []string          `yaml:"arch"`
	Init        *bool             `yaml:"init"`
	Services    []string          `yaml:"services"`
	Ingress     bool              `yaml:"ingress"`
	IngressPort *int              `yaml:"ingress_port"`
	PanelIcon   string            `yaml:"panel_icon"`
	Ports       map[string]*int   `yaml:"ports"`
	Map         []map[string]any  `yaml:"map"`
	Options     map[string]any    `yaml:"options"`
	Schema      map[string]any    `yaml:"schema"`
	PortsDesc   map[string]string `yaml:"ports_description"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readConfig(t *testing.T) addonConfig {
	var c addonConfig
	readYAML(t, filepath.Join(addonDir, "config.yaml"), &c)
	return c
}

func TestConfigYAML(t *testing.T) {
	c := readConfig(t)
	if c.Name == "" || c.Slug != "fleet2mqtt" || c.Description == "" || c.URL == "" {
		t.Errorf("name %q slug %q description %q url %q", c.Name, c.Slug, c.Description, c.URL)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(c.Version) {
		t.Errorf("version %q is not x.y.z (the image is built from tag v<version>)", c.Version)
	}
	if !slices.Equal(c.Arch, []string{"aarch64", "amd64"}) {
		t.Errorf("arch %v, want [aarch64 amd64] (all Home Assistant supports)", c.Arch)
	}
	if c.Init == nil || *c.Init {
		t.Error("init must be false: fleet2mqtt handles signals itself")
	}
	if !slices.Contains(c.Services, "mqtt:want") {
		t.Errorf("services %v lack mqtt:want", c.Services)
	}
	// Home Assistant's ingress port is 8099 unless ingress_port says
	// otherwise (the linter rules, see lint_test.go, want it left out).
	ingressPort := defaultIngressPort
	if c.IngressPort != nil {
		ingressPort = *c.IngressPort
	}
	if !c.Ingress || ":"+strconv.Itoa(ingressPort) != IngressListen {
		t.Errorf("ingress %v port %d, want true and the port of %s", c.Ingress, ingressPort, IngressListen)
	}
	if !strings.HasPrefix(c.PanelIcon, "mdi:") {
		t.Errorf("panel_icon %q", c.PanelIcon)
	}
	_, vport, _ := net.SplitHostPort(VehicleListen)
	if p := c.Ports[vport+"/tcp"]; p == nil || *p != 443 {
		t.Errorf("ports %v: %s/tcp must map to host port 443 (cars dial 443)", c.Ports, vport)
	}
	_, mport, _ := net.SplitHostPort(MQTTListen)
	if _, ok := c.Ports[mport+"/tcp"]; !ok {
		t.Errorf("ports %v lack the embedded broker's %s/tcp", c.Ports, mport)
	}
	var maps []string
	for _, m := range c.Map {
		maps = append(maps, m["type"].(string))
		if m["type"] == "addon_config" && m["read_only"] != false {
			t.Error("addon_config must be writable (read_only: false)")
		}
	}
	if !slices.Contains(maps, "addon_config") || !slices.Contains(maps, "ssl") {
		t.Errorf("map %v lacks addon_config or ssl", maps)
	}
}

// TestConfigYAMLOptions checks options and schema against Options: every
// key known, defaults equal, optional keys only in the schema, and the
// list() choices exactly those Validate accepts.
func TestConfigYAMLOptions(t *testing.T) {
	c := readConfig(t)
	var schemaKeys []string
	for k := range c.Schema {
		schemaKeys = append(schemaKeys, k)
	}
	known := slices.Clone(optionKeys())
	slices.Sort(known)
	slices.Sort(schemaKeys)
	if !slices.Equal(schemaKeys, known) {
		t.Errorf("schema keys %v\nOptions keys %v", schemaKeys, known)
	}

	// The options section, as the Supervisor writes it to options.json,
	// must load to DefaultOptions.
	raw, err := json.Marshal(c.Options)
	if err != nil {
		t.Fatal(err)
	}
	p := writeOptions(t, t.TempDir(), string(raw))
	got, err := LoadOptions(p)
	if err != nil {
		t.Fatalf("options of config.yaml: %v", err)
	}
	def, _ := json.Marshal(DefaultOptions())
	gotJSON, _ := json.Marshal(got)
	if string(def) != string(gotJSON) {
		t.Errorf("config.yaml options load as\n%s\nDefaultOptions is\n%s", gotJSON, def)
	}

	for key, typ := range c.Schema {
		s, isString := typ.(string)
		_, hasDefault := c.Options[key]
		if isString && strings.HasSuffix(s, "?") && hasDefault {
			t.Errorf("%s: optional (%s) but has a default: Home Assistant then requires it", key, s)
		}
		if isString && !strings.HasSuffix(s, "?") && !hasDefault {
			t.Errorf("%s: required (%s) without a default: the add-on would not start before the user sets it", key, s)
		}
		if !isString || !strings.HasPrefix(s, "list(") {
			continue
		}
		choices := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, "list("), ")"), "|")
		for _, v := range append(choices, "not-a-choice") {
			o := DefaultOptions()
			o.MQTTURL = "mqtt://127.0.0.1:1883" // so that external validates
			j, _ := json.Marshal(map[string]string{key: v})
			if err := json.Unmarshal(j, &o); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if v == "not-a-choice" && err == nil {
				t.Errorf("%s: Validate accepts %q", key, v)
			}
			if v != "not-a-choice" && err != nil {
				t.Errorf("%s: schema offers %q but Validate says %v", key, v, err)
			}
		}
	}
}

func TestTranslations(t *testing.T) {
	c := readConfig(t)
	var tr struct {
		Configuration map[string]struct {
			Name        string `yaml:"name"`
			Description string `yaml:"description"`
			Fields      map[string]struct {
				Name string `yaml:"name"`
			} `yaml:"fields"`
		} `yaml:"configuration"`
		Network map[string]string `yaml:"network"`
	}
	readYAML(t, filepath.Join(addonDir, "translations", "en.yaml"), &tr)
	for key := range c.Schema {
		e, ok := tr.Configuration[key]
		if !ok || e.Name == "" || e.Description == "" {
			t.Errorf("translations/en.yaml: %s lacks a name or description", key)
		}
	}
	for key := range tr.Configuration {
		if _, ok := c.Schema[key]; !ok {
			t.Errorf("translations/en.yaml: %s is not an option", key)
		}
	}
	if f := tr.Configuration["mqtt_users"].Fields; f["name"].Name == "" || f["password"].Name == "" {
		t.Error("translations/en.yaml: mqtt_users lacks its fields")
	}
	for port := range c.Ports {
		if tr.Network[port] == "" {
			t.Errorf("translations/en.yaml: network lacks %s", port)
		}
	}
}

func TestRepositoryYAML(t *testing.T) {
	var r struct {
		Name, URL, Maintainer string
	}
	readYAML(t, filepath.Join(addonDir, "..", "repository.yaml"), &r)
	if r.Name == "" || !strings.HasPrefix(r.URL, "https://") {
		t.Errorf("repository.yaml: name %q url %q", r.Name, r.URL)
	}
}

// TestImagesAgree checks that the main Dockerfile, the add-on's
// Dockerfile and scripts/crossbuild pin the same Tesla CA bundle and build
// with the same flags, and that the CA lands where the add-on looks.
func TestImagesAgree(t *testing.T) {
	read := func(path string) string {
		raw, err := os.ReadFile(filepath.Join(addonDir, "..", path))
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	main, addon, cross := read("Dockerfile"), read("addon/Dockerfile"), read("scripts/crossbuild")
	argRE := func(name string) *regexp.Regexp { return regexp.MustCompile(`(?m)^ARG ` + name + `=(\S+)$`) }
	for _, name := range []string{"TESLA_CA_COMMIT", "TESLA_CA_SHA256", "GO_VERSION"} {
		m, a := argRE(name).FindStringSubmatch(main), argRE(name).FindStringSubmatch(addon)
		if m == nil || a == nil || m[1] != a[1] {
			t.Errorf("ARG %s: Dockerfile %v, addon/Dockerfile %v", name, m, a)
		}
	}
	if m := argRE("TESLA_CA_SHA256").FindStringSubmatch(main); m == nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(m[1]) {
		t.Errorf("TESLA_CA_SHA256 %v is not a SHA-256", m)
	}
	flags := regexp.MustCompile(`go build -trimpath -ldflags "-s -w -X main\.Version=\$\{?(\w+)\}?"`)
	for name, f := range map[string]string{"Dockerfile": main, "addon/Dockerfile": addon, "scripts/crossbuild": cross} {
		if !flags.MatchString(f) {
			t.Errorf("%s does not build with go build -trimpath -ldflags \"-s -w -X main.Version=…\"", name)
		}
		if !strings.Contains(f, "CGO_ENABLED=0") {
			t.Errorf("%s does not set CGO_ENABLED=0", name)
		}
	}
	for name, f := range map[string]string{"Dockerfile": main, "addon/Dockerfile": addon} {
		if !strings.Contains(f, strings.TrimPrefix(filepath.Dir(TeslaCAPath), "/")) || !strings.Contains(f, filepath.Base(TeslaCAPath)) {
			t.Errorf("%s does not install the CA bundle at %s", name, TeslaCAPath)
		}
		if !strings.Contains(f, `"/fleet2mqtt", "healthcheck"`) {
			t.Errorf("%s has no HEALTHCHECK with fleet2mqtt healthcheck", name)
		}
	}
	if !strings.Contains(addon, `"-http-listen", "127.0.0.1`+IngressListen+`"`) {
		t.Errorf("addon/Dockerfile's HEALTHCHECK does not ask the ingress listener 127.0.0.1%s", IngressListen)
	}
	if !strings.Contains(main, "- "+TeslaCAPath) {
		t.Errorf("the main image's config.yaml does not list %s in vehicle.client_ca_files", TeslaCAPath)
	}
}
