package addon

import (
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/external"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// Configure sets what the add-on decides in cfg: the settings override
// the add-on's optional configuration file (ConfigFile), which cfg was
// loaded from. cfg is validated afterwards, by the caller.
func (s Settings) Configure(cfg *config.Config) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, s.DataDir)
	set(&cfg.Log.Level, s.LogLevel)
	set(&cfg.Vehicle.Listen, s.VehicleListen)
	cfg.Vehicle.TLS.CertFile, cfg.Vehicle.TLS.KeyFile = s.CertFile, s.KeyFile
	if len(s.ClientCAFiles) > 0 {
		cfg.Vehicle.TLS.ClientCAFiles = s.ClientCAFiles
	}
	set(&cfg.HTTP.Listen, s.HTTPListen)
	set(&cfg.Setup.PublicHostname, s.Hostname)
	if s.Ingress {
		cfg.Setup.TrustIngress = true
	}
	set(&cfg.MQTT.Prefix, s.Prefix)
	cfg.MQTT.Compat.Enabled = s.Compat
	set(&cfg.MQTT.Broker, s.Broker)
	cfg.HomeAssistant.Enabled = s.Discovery
	set(&cfg.HomeAssistant.Prefix, s.DiscoveryPrefix)
	cfg.Commands.Enabled = s.Commands
	cfg.Commands.Categories = s.CommandCategories
	if len(s.CommandUsers) > 0 {
		cfg.Commands.MQTTUsers = s.CommandUsers
	}
	switch s.Broker {
	case config.BrokerEmbedded:
		set(&cfg.MQTT.Embedded.Listen, s.EmbeddedListen)
		if len(s.EmbeddedUsers) > 0 {
			users := make([]embedded.User, len(s.EmbeddedUsers))
			for i, u := range s.EmbeddedUsers {
				users[i] = embedded.User{Name: u.Name, Password: embedded.Secret(u.Password)}
			}
			cfg.MQTT.Embedded.Users = users
		}
	case config.BrokerExternal:
		cfg.MQTT.External.URL = s.ExternalURL
		cfg.MQTT.External.Username = s.ExternalUsername
		cfg.MQTT.External.Password = external.Secret(s.ExternalPassword)
	}
}
