package discovery

import (
	"fmt"
	"strings"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// maxInstanceLen bounds Config.Instance, which becomes part of every id.
const maxInstanceLen = 32

// Config is how the bridge announces cars to Home Assistant. Start from
// DefaultConfig and decode the configuration file over it, so that keys
// the file leaves out keep their defaults.
type Config struct {
	// Enabled publishes discovery messages. Turning it off stops
	// announcing; it does not remove what was announced before (use
	// `fleet2mqtt discovery remove <VIN>` for that). Default true.
	Enabled bool `yaml:"enabled"`
	// Prefix is Home Assistant's discovery prefix, the first level of
	// every discovery topic: <prefix>/device/<id>/config. It must match
	// the discovery prefix set in Home Assistant's MQTT integration.
	// Default "homeassistant".
	Prefix string `yaml:"prefix"`
	// StatusTopic is where Home Assistant announces that it started
	// (payload online) or stopped (offline); on online the bridge
	// announces every car again. Default "<prefix>/status", which is Home
	// Assistant's default birth topic for the default prefix.
	StatusTopic string `yaml:"status_topic"`
	// Instance tells apart bridges that serve the same car on one broker,
	// such as a test installation next to the real one. Every id (device
	// id, discovery topic, unique ids) carries it, so that each instance
	// makes its own device in Home Assistant. Replicas of one installation
	// behind a load balancer must share the same value (they then publish
	// identical messages). Letters, digits and '-', at most 32
	// characters. Changing it makes new entities: history stays with the
	// old ones. Default empty.
	Instance string `yaml:"instance"`
	// Include, when not empty, announces only these signals (protocol
	// names such as Soc or DetailedChargeState), of those the car streams
	// or has sent. The streaming and alerts entities are always announced.
	Include []string `yaml:"include"`
	// Exclude never announces these signals. A signal may not be in both
	// lists.
	Exclude []string `yaml:"exclude"`
	// EnableObscure announces obscure signals (diagnostic internals such
	// as drive inverter temperatures and static car configuration)
	// enabled. By default they are announced disabled: they exist in Home
	// Assistant and can be enabled there one by one. Default false.
	EnableObscure bool `yaml:"enable_obscure"`
	// Controls are the entities that command the car (controls.go). They
	// follow the commands section, not this one: the caller sets them.
	Controls Controls `yaml:"-"`
}

// DefaultConfig returns the configuration discovery runs with when the
// file says nothing.
func DefaultConfig() Config {
	return Config{Enabled: true, Prefix: "homeassistant"}
}

// Validate reports the first option that cannot work, naming its key.
func (c Config) Validate() error {
	if err := topic.Check("prefix", c.Prefix, "homeassistant"); err != nil {
		return err
	}
	if c.StatusTopic != "" {
		if err := topic.Check("status_topic", c.StatusTopic, "homeassistant"); err != nil {
			return err
		}
	}
	if len(c.Instance) > maxInstanceLen {
		return configerr.Errorf("instance", "%q is longer than %d characters", c.Instance, maxInstanceLen)
	}
	for i := 0; i < len(c.Instance); i++ {
		if ch := c.Instance[i]; !isUpper(ch) && !isLower(ch) && !isDigit(ch) && ch != '-' {
			return configerr.Errorf("instance", "%q may hold only letters, digits and '-', such as \"test\"", c.Instance)
		}
	}
	if err := validateFields("include", c.Include); err != nil {
		return err
	}
	if err := validateFields("exclude", c.Exclude); err != nil {
		return err
	}
	for _, in := range c.Include {
		for _, ex := range c.Exclude {
			if in == ex {
				return configerr.Pair("include", "exclude", "%q is in both; keep it in one", in)
			}
		}
	}
	return nil
}

// StatusTopicOrDefault returns the topic of Home Assistant's status
// (birth and last will) messages: StatusTopic, or <prefix>/status.
func (c Config) StatusTopicOrDefault() string {
	if c.StatusTopic != "" {
		return c.StatusTopic
	}
	return c.Prefix + "/status"
}

// validateFields checks that every name is a catalog signal that can be
// announced.
func validateFields(key string, names []string) error {
	for i, name := range names {
		f, ok := telemetry.FieldByName(name)
		if !ok {
			if s := suggestField(name); s != "" {
				return configerr.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q is not a signal name; did you mean %q?", name, s)
			}
			return configerr.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q is not a signal name: use protocol names such as \"Soc\" or \"DetailedChargeState\"", name)
		}
		if len(specs()[f]) == 0 {
			return configerr.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q is never announced to Home Assistant, so listing it has no effect", name)
		}
	}
	return nil
}

// suggestField returns the catalog name equal to name but for case and
// separators ("battery_level" → "BatteryLevel"), or "".
func suggestField(name string) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	}
	want := norm(name)
	for _, info := range telemetry.Catalog() {
		if norm(info.Name) == want {
			return info.Name
		}
	}
	return ""
}
