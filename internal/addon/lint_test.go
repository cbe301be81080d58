package addon

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The rules of Home Assistant's community add-on linter (the GitHub action
// frenck/action-addon-linter), restated so that config.yaml keeps passing
// them without that action: its JSON schema of config.yaml (required keys,
// no unknown key, allowed values, no key that restates its default) and
// its checks beyond the schema (ingress, watchdog, devices, map, backup).
// Facts as of the linter's 2026 rules; each failure names its rule.

// defaultIngressPort is Home Assistant's ingress port when config.yaml
// does not set ingress_port.
const defaultIngressPort = 8099

// configDefaults are the keys of config.yaml that have a default, and that
// default: a key set to it is noise the linter rejects.
var configDefaults = map[string]any{
	"advanced":          false,
	"apparmor":          true,
	"audio":             false,
	"auth_api":          false,
	"auto_uart":         false,
	"backup":            "hot",
	"boot":              "auto",
	"devicetree":        false,
	"docker_api":        false,
	"full_access":       false,
	"gpio":              false,
	"hassio_api":        false,
	"hassio_role":       "default",
	"homeassistant_api": false,
	"host_dbus":         false,
	"host_ipc":          false,
	"host_network":      false,
	"host_pid":          false,
	"host_uts":          false,
	"ingress":           false,
	"ingress_port":      defaultIngressPort,
	"ingress_stream":    false,
	"init":              true,
	"journald":          false,
	"kernel_modules":    false,
	"legacy":            false,
	"options":           map[string]any{},
	"panel_admin":       true,
	"panel_icon":        "mdi:puzzle",
	"realtime":          false,
	"schema":            map[string]any{},
	"stage":             "stable",
	"startup":           "application",
	"stdin":             false,
	"timeout":           10,
	"tmpfs":             false,
	"uart":              false,
	"udev":              false,
	"ulimits":           map[string]any{},
	"usb":               false,
	"video":             false,
}

// configKeysWithoutDefault are the other keys config.yaml may have.
var configKeysWithoutDefault = []string{
	"arch", "backup_exclude", "backup_post", "backup_pre", "breaking_versions",
	"codenotary", "description", "devices", "discovery", "environment",
	"homeassistant", "image", "ingress_entry", "machine", "map", "name",
	"panel_title", "ports", "ports_description", "privileged", "services",
	"slug", "url", "version", "watchdog", "webui",
}

// configEnums are the keys whose value is one of a few words.
var configEnums = map[string][]string{
	"backup":      {"hot", "cold"},
	"boot":        {"auto", "manual", "manual_only"},
	"hassio_role": {"admin", "backup", "default", "homeassistant", "manager"},
	"stage":       {"deprecated", "experimental", "stable"},
	"startup":     {"application", "initialize", "once", "services", "system"},
}

var (
	serviceRE = regexp.MustCompile(`^(mqtt|mysql):(provide|want|need)$`)
	mapRE     = regexp.MustCompile(`^(addon_config|all_addon_configs|config|homeassistant_config|ssl|addons|backup|share|media)(:(rw|ro))?$`)
	mapTypes  = []string{"addon_config", "addons", "all_addon_configs", "backup", "config", "data", "homeassistant_config", "media", "share", "ssl"}
	// imageRE is the Supervisor's rule for image: a registry path whose
	// {arch} it replaces with the machine's architecture.
	imageRE = regexp.MustCompile(`^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)$`)
)

// lintConfig applies the linter's rules to a parsed config.yaml and
// returns one message per broken rule, each starting with the rule's name.
func lintConfig(c map[string]any) []string {
	var problems []string
	fail := func(rule, format string, args ...any) {
		problems = append(problems, rule+": "+fmt.Sprintf(format, args...))
	}

	for _, key := range []string{"arch", "description", "name", "slug", "version"} {
		if _, ok := c[key]; !ok {
			fail("required", "%q is missing", key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(c)) {
		def, hasDefault := configDefaults[key]
		if !hasDefault && !slices.Contains(configKeysWithoutDefault, key) {
			fail("known-keys", "%q is not a key of config.yaml", key)
		}
		if hasDefault && reflect.DeepEqual(c[key], def) {
			fail("no-defaults", "%q should be removed: %v is its default", key, def)
		}
		if words, ok := configEnums[key]; ok && !slices.Contains(words, fmt.Sprint(c[key])) {
			fail("allowed-values", "%s %v is none of %v", key, c[key], words)
		}
	}

	for _, a := range list(c["arch"]) {
		switch a {
		case "aarch64", "amd64":
		case "armhf", "armv7", "i386":
			fail("arch", "%v is no longer supported by Home Assistant (since 2025.12)", a)
		default:
			fail("arch", "%v is not an architecture", a)
		}
	}
	for _, s := range list(c["services"]) {
		if str, _ := s.(string); !serviceRE.MatchString(str) {
			fail("services", "%v is not mqtt|mysql:provide|want|need", s)
		}
	}
	if ports, ok := c["ports"].(map[string]any); ok {
		for name, p := range ports {
			if n, isInt := p.(int); p != nil && (!isInt || n < 1 || n > 65535) {
				fail("ports", "%s maps to %v, not a port (1-65535) or null", name, p)
			}
		}
	}
	lintMap(list(c["map"]), fail)

	if img, ok := c["image"].(string); ok {
		if !strings.Contains(img, "{arch}") || !imageRE.MatchString(img) {
			fail("image", "%q is not a registry path with {arch}", img)
		}
	}
	if c["ingress"] == true {
		if _, ok := c["webui"]; ok {
			fail("ingress-webui", "webui should be removed, ingress is enabled")
		}
		if port, ok := c["ingress_port"]; ok && port == 0 && c["host_network"] != true {
			fail("ingress-port", "ingress_port 0 (random) is only for add-ons on the host network")
		}
	}
	if c["full_access"] == true {
		fail("full-access", "full_access: use devices, gpio, uart or usb instead")
	}
	if c["advanced"] == true {
		fail("advanced", "advanced hides the add-on from most users and is to be deprecated")
	}
	if _, ok := c["auto_uart"]; ok {
		fail("auto-uart", "auto_uart is deprecated, use uart")
	}
	for _, d := range list(c["devices"]) {
		if strings.Contains(fmt.Sprint(d), ":") {
			fail("devices", "%v uses the old format; list paths only", d)
		}
	}
	if t, ok := c["tmpfs"]; ok {
		if _, isBool := t.(bool); !isBool {
			fail("tmpfs", "tmpfs is a boolean now, not %v", t)
		}
	}
	if c["backup"] == "cold" {
		for _, k := range []string{"backup_pre", "backup_post"} {
			if _, ok := c[k]; ok {
				fail("cold-backup", "%s is not valid with cold backups", k)
			}
		}
	}
	if _, ok := c["watchdog"]; ok {
		fail("watchdog", "watchdog is obsolete: the image's HEALTHCHECK does its work")
	}
	if _, ok := c["codenotary"]; ok {
		fail("codenotary", "codenotary is no longer used")
	}
	return problems
}

// lintMap checks map: all strings (folder[:rw|:ro]) or all objects
// ({type, read_only, path}); the old config folder is neither used nor
// combined with its replacements.
func lintMap(entries []any, fail func(rule, format string, args ...any)) {
	var types []string
	strs, objs := 0, 0
	for _, e := range entries {
		switch e := e.(type) {
		case string:
			strs++
			if !mapRE.MatchString(e) {
				fail("map", "%q is not a folder[:rw|:ro]", e)
			}
			types = append(types, strings.SplitN(e, ":", 2)[0])
		case map[string]any:
			objs++
			typ, _ := e["type"].(string)
			if !slices.Contains(mapTypes, typ) {
				fail("map", "type %v is none of %v", e["type"], mapTypes)
			}
			for k, v := range e {
				switch k {
				case "type":
				case "read_only":
					if _, ok := v.(bool); !ok {
						fail("map", "%s: read_only %v is not a boolean", typ, v)
					}
				case "path":
					if _, ok := v.(string); !ok {
						fail("map", "%s: path %v is not a string", typ, v)
					}
				default:
					fail("map", "%s: unknown key %q", typ, k)
				}
			}
			types = append(types, typ)
		default:
			fail("map", "%v is neither a string nor an object", e)
		}
	}
	if strs > 0 && objs > 0 {
		fail("map", "mixes strings and objects")
	}
	if slices.Contains(types, "config") {
		fail("map-config", "the config folder is replaced by homeassistant_config")
		if slices.Contains(types, "homeassistant_config") || slices.Contains(types, "addon_config") {
			fail("map-config", "config conflicts with homeassistant_config and addon_config")
		}
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestConfigYAMLPassesLinter checks addon/config.yaml against the linter's
// rules, and that no deprecated build.yaml comes back.
func TestConfigYAMLPassesLinter(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(addonDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, p := range lintConfig(c) {
		t.Errorf("addon/config.yaml breaks the add-on linter's rule %s", p)
	}
	for _, name := range []string{"build.yaml", "build.yml", "build.json"} {
		if _, err := os.Stat(filepath.Join(addonDir, name)); err == nil {
			t.Errorf("addon/%s: build files are deprecated; base image, labels and arguments live in the Dockerfile", name)
		}
	}
}

// TestLintConfigRules shows that each rule catches what it is for: a
// config that breaks it gets a message naming it, a clean one gets none.
func TestLintConfigRules(t *testing.T) {
	clean := func() map[string]any {
		return map[string]any{
			"name": "x", "version": "1.0.0", "slug": "x", "description": "x",
			"arch": []any{"aarch64", "amd64"}, "ingress": true, "init": false,
			"services": []any{"mqtt:want"},
			"ports":    map[string]any{"8443/tcp": 443, "1883/tcp": nil},
			"map":      []any{map[string]any{"type": "addon_config", "read_only": false}, map[string]any{"type": "ssl"}},
			"image":    "ghcr.io/owner/{arch}-name",
		}
	}
	if p := lintConfig(clean()); len(p) != 0 {
		t.Fatalf("a clean config gets %v", p)
	}
	tests := []struct {
		rule   string
		change func(map[string]any)
	}{
		{"required", func(c map[string]any) { delete(c, "slug") }},
		{"known-keys", func(c map[string]any) { c["startup_timeout"] = 5 }},
		{"no-defaults", func(c map[string]any) { c["boot"] = "auto" }},
		{"no-defaults", func(c map[string]any) { c["startup"] = "application" }},
		{"no-defaults", func(c map[string]any) { c["ingress_port"] = 8099 }},
		{"no-defaults", func(c map[string]any) { c["init"] = true }},
		{"allowed-values", func(c map[string]any) { c["boot"] = "always" }},
		{"arch", func(c map[string]any) { c["arch"] = []any{"armv7", "amd64"} }},
		{"services", func(c map[string]any) { c["services"] = []any{"mqtt"} }},
		{"ports", func(c map[string]any) { c["ports"] = map[string]any{"8443/tcp": 70000} }},
		{"map", func(c map[string]any) { c["map"] = []any{"ssl:rw", map[string]any{"type": "share"}} }},
		{"map", func(c map[string]any) { c["map"] = []any{"tmp"} }},
		{"map-config", func(c map[string]any) { c["map"] = []any{"config:rw", "addon_config"} }},
		{"image", func(c map[string]any) { c["image"] = "ghcr.io/owner/name" }},
		{"ingress-webui", func(c map[string]any) { c["webui"] = "http://[HOST]:[PORT:8099]/" }},
		{"ingress-port", func(c map[string]any) { c["ingress_port"] = 0 }},
		{"full-access", func(c map[string]any) { c["full_access"] = true }},
		{"advanced", func(c map[string]any) { c["advanced"] = true }},
		{"auto-uart", func(c map[string]any) { c["auto_uart"] = true }},
		{"devices", func(c map[string]any) { c["devices"] = []any{"/dev/ttyUSB0:/dev/ttyUSB0:rwm"} }},
		{"tmpfs", func(c map[string]any) { c["tmpfs"] = "size=10m" }},
		{"cold-backup", func(c map[string]any) { c["backup"] = "cold"; c["backup_pre"] = "/stop" }},
		{"watchdog", func(c map[string]any) { c["watchdog"] = "http://[HOST]:[PORT:8099]/healthz" }},
		{"codenotary", func(c map[string]any) { c["codenotary"] = "me@example.com" }},
	}
	for _, tt := range tests {
		c := clean()
		tt.change(c)
		problems := lintConfig(c)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, tt.rule+": ") }) {
			t.Errorf("rule %s: not reported; got %v", tt.rule, problems)
		}
	}
}

// TestImageLabels checks the labels the Supervisor reads on the add-on
// image: its type is "addon", and its architecture and version are the
// build's.
func TestImageLabels(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(addonDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	f := string(raw)
	for _, want := range []string{
		`io.hass.type="addon"`,
		`io.hass.arch="${BUILD_ARCH}"`,
		`io.hass.version="${BUILD_VERSION}"`,
		`HEALTHCHECK `,
	} {
		if !strings.Contains(f, want) {
			t.Errorf("addon/Dockerfile lacks %s", want)
		}
	}
}

// TestReleaseWorkflowPushesAddonImages checks that the release workflow
// pushes the images config.yaml's image names, tagged with the version
// the Supervisor asks for (config.yaml's version, without a v), for every
// architecture of arch.
func TestReleaseWorkflowPushesAddonImages(t *testing.T) {
	c := readConfig(t)
	var img struct {
		Image string `yaml:"image"`
	}
	readYAML(t, filepath.Join(addonDir, "config.yaml"), &img)
	raw, err := os.ReadFile(filepath.Join(addonDir, "..", ".github", "workflows", "release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	wf := string(raw)
	// The workflow names the image with its architecture in ${{ matrix.arch }}.
	want := strings.ReplaceAll(img.Image, "{arch}", "${{ matrix.arch }}")
	if !strings.Contains(wf, want) {
		t.Errorf("release.yml does not push %s (config.yaml's image)", want)
	}
	for _, arch := range c.Arch {
		if !regexp.MustCompile(`(?m)^\s*- arch: ` + arch + `\b`).MatchString(wf) {
			t.Errorf("release.yml's add-on matrix lacks %s", arch)
		}
	}
	if !strings.Contains(wf, "addon/config.yaml") {
		t.Error("release.yml does not check the tag against addon/config.yaml's version")
	}
}
