package addon

import (
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/config"
)

func TestSettingsConfigure(t *testing.T) {
	t.Run("external broker from the Supervisor", func(t *testing.T) {
		cfg := config.Default()
		Settings{
			DataDir: "/data", LogLevel: "debug", VehicleListen: ":8443", HTTPListen: ":8099",
			Prefix: "car", Compat: true, Broker: "external", Discovery: true, DiscoveryPrefix: "ha",
			ExternalURL: "mqtt://core-mosquitto:1883", ExternalUsername: "addons", ExternalPassword: "s3cret",
			ClientCAFiles: []string{"/etc/fleet2mqtt/tesla-vehicle-ca.pem"},
		}.Configure(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.DataDir != "/data" || cfg.Log.Level != "debug" || cfg.Vehicle.Listen != ":8443" || cfg.HTTP.Listen != ":8099" {
			t.Errorf("paths and listeners not applied: %+v", cfg)
		}
		if cfg.MQTT.Broker != config.BrokerExternal || cfg.MQTT.External.URL != "mqtt://core-mosquitto:1883" ||
			cfg.MQTT.External.Username != "addons" || cfg.MQTT.External.Password.Reveal() != "s3cret" {
			t.Errorf("external broker not applied: %+v", cfg.MQTT.External)
		}
		if !cfg.HomeAssistant.Enabled || cfg.HomeAssistant.Prefix != "ha" {
			t.Errorf("discovery not applied: %+v", cfg.HomeAssistant)
		}
		if cfg.MQTT.Prefix != "car" || !cfg.MQTT.Compat.Enabled || len(cfg.Vehicle.TLS.ClientCAFiles) != 1 {
			t.Errorf("layout or CA not applied: %+v %+v", cfg.MQTT.Config, cfg.Vehicle)
		}
	})
	t.Run("embedded broker with users", func(t *testing.T) {
		cfg := config.Default()
		Settings{Broker: "embedded", EmbeddedListen: ":1883",
			EmbeddedUsers: []User{{Name: "homeassistant", Password: "pw"}}}.Configure(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.MQTT.Embedded.Listen != ":1883" || len(cfg.MQTT.Embedded.Users) != 1 || cfg.MQTT.Embedded.Users[0].Name != "homeassistant" {
			t.Errorf("embedded broker not applied: %+v", cfg.MQTT.Embedded)
		}
	})
}
