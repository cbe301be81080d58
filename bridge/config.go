package bridge

import (
	"fmt"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/internal/configerr"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
)

// Config is how the bridge lays out its topics and publishes its messages.
// Start from DefaultConfig and decode the configuration file over it, so
// that keys the file leaves out keep their defaults.
type Config struct {
	// Prefix is the first level of every topic the bridge publishes:
	// <prefix>/<VIN>/<Field>, <prefix>/<VIN>/state, <prefix>/bridge/state.
	// It may hold several levels ("home/tesla") but no wildcard, no
	// leading or trailing slash and no leading '$'. Default "tesla".
	Prefix string `yaml:"prefix"`
	// Replica names this process among the replicas of one installation
	// that share a broker behind a load balancer, such as "a" or
	// "fleet2mqtt-0"; each replica needs a name of its own. A replica says
	// whether it runs on <prefix>/bridge/<replica>/state (retained; the
	// external client's last will), and the replicas together keep
	// <prefix>/bridge/state, which Home Assistant's availability follows,
	// online while at least one of them runs (see RunReplicas). Letters,
	// digits, '-' and '_', at most 64 characters. Empty (default): a
	// single instance, which says whether it runs on <prefix>/bridge/state
	// itself.
	Replica string `yaml:"replica"`
	// QoS is the MQTT quality of service of every message: 0 (at most
	// once) or 1 (at least once; the car's frame is acknowledged only
	// after the broker acknowledged every message). Default 1.
	QoS byte `yaml:"qos"`
	// Retain makes the broker keep the latest message of every vehicle
	// topic, so that a dashboard shows the car's state the moment it
	// subscribes. <prefix>/bridge/state is retained whatever this says.
	// Default true.
	Retain bool `yaml:"retain"`
	// StateTopic publishes <prefix>/<VIN>/state, one JSON object with the
	// latest value of every field the vehicle sent, after data records
	// that change a value. Default true.
	StateTopic bool `yaml:"state_topic"`
	// StateInterval is the shortest time between two state objects of a
	// vehicle. A record that changes a value sooner does not publish it;
	// one state object with the values of that moment follows at the end
	// of the interval instead, so the latest values always arrive. The
	// state object repeats every value and is the largest message by far:
	// this keeps a car that streams many records a second from costing a
	// large message per record. The field topics are published with every
	// record regardless. 0 publishes the state object with every record
	// that changes a value. Default 1s.
	StateInterval time.Duration `yaml:"state_interval"`
	// Compat adds the layout of Tesla's reference server, for tools that
	// already consume it. Off by default.
	Compat CompatConfig `yaml:"compat"`
}

// CompatConfig is the optional layout identical to the MQTT output of
// Tesla's reference server (fleet-telemetry): <base>/<VIN>/v/<Field> with
// JSON values, <base>/<VIN>/alerts/<name>/current and /history,
// <base>/<VIN>/errors/<name> and <base>/<VIN>/connectivity.
type CompatConfig struct {
	// Enabled publishes the compatibility layout. Default false.
	Enabled bool `yaml:"enabled"`
	// Base is the first level of the compatibility topics, the reference
	// server's topic_base. Same rules as prefix. Default "telemetry".
	Base string `yaml:"base"`
	// Retain sets the retain flag of compatibility messages. The reference
	// server publishes them without it, which is the default.
	Retain bool `yaml:"retain"`
	// Exclusive publishes only the compatibility layout (and
	// <prefix>/bridge/state), not the native topics. Default false.
	Exclusive bool `yaml:"exclusive"`
}

// DefaultConfig returns the configuration the bridge runs with when the
// file says nothing.
func DefaultConfig() Config {
	return Config{
		Prefix:        "tesla",
		QoS:           1,
		Retain:        true,
		StateTopic:    true,
		StateInterval: time.Second,
		Compat:        CompatConfig{Base: "telemetry"},
	}
}

// Validate reports the first option that cannot work, naming its key
// relative to this section ("prefix"); the configuration's owner says
// where the section sits (see package configerr).
func (c Config) Validate() error {
	if err := topic.Check("prefix", c.Prefix, "tesla"); err != nil {
		return err
	}
	if err := validateReplica("replica", c.Replica); err != nil {
		return err
	}
	switch c.QoS {
	case 0, 1:
	case 2:
		return configerr.Errorf("qos", "2 is not supported: use 1 (at least once; a frame is acknowledged to the car only after the broker acknowledged it) or 0")
	default:
		return configerr.Errorf("qos", "%d is not a QoS level: use 1 (default) or 0", c.QoS)
	}
	if c.StateInterval < 0 {
		return configerr.Errorf("state_interval", "%v is negative: use 0 to publish the state object with every record, or a duration such as 1s", c.StateInterval)
	}
	if c.Compat.Enabled || c.Compat.Exclusive {
		if err := topic.Check("compat.base", c.Compat.Base, "tesla"); err != nil {
			return err
		}
	}
	if c.Compat.Exclusive && !c.Compat.Enabled {
		return configerr.Errorf("compat.exclusive", "true needs %s: true", configerr.Key("compat.enabled"))
	}
	return nil
}

// maxReplicaLen bounds Config.Replica, a topic level.
const maxReplicaLen = 64

// validateReplica checks a replica name: one topic level of letters,
// digits, '-' and '_', or empty.
func validateReplica(key, r string) error {
	if len(r) > maxReplicaLen {
		return fmt.Errorf("%s: %q is longer than %d characters", key, r, maxReplicaLen)
	}
	for i := 0; i < len(r); i++ {
		switch c := r[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%s: %q may hold only letters, digits, '-' and '_', such as \"a\" or \"fleet2mqtt-0\"", key, r)
		}
	}
	return nil
}

// Payloads of the bridge state topics. The external broker client
// announces PayloadOffline as its last will.
const (
	PayloadOnline  = "online"
	PayloadOffline = "offline"
)

// BridgeStateTopic returns where this process says whether it runs
// (retained; the external client's last will): <prefix>/bridge/state, or
// <prefix>/bridge/<replica>/state for a replica.
func (c Config) BridgeStateTopic() string {
	if c.Replica != "" {
		return c.Prefix + "/bridge/" + c.Replica + "/state"
	}
	return c.AvailabilityTopic()
}

// AvailabilityTopic returns <prefix>/bridge/state, which says whether
// fleet2mqtt runs and which Home Assistant's availability follows. A
// single instance publishes it as its own state; replicas keep it online
// while at least one of them runs.
func (c Config) AvailabilityTopic() string { return c.Prefix + "/bridge/state" }
