// Package addon runs fleet2mqtt as a Home Assistant add-on ("app"): it
// tells whether the Supervisor started us, reads the options the user set
// in Home Assistant's add-on page (/data/options.json), asks the
// Supervisor for the MQTT broker Home Assistant uses, and turns all of it
// into the few settings fleet2mqtt's configuration needs.
//
// Typical use, from the serve command:
//
//	if addon.Detect() {
//		s, err := addon.Load(ctx)
//		if err != nil { ... }    // the message is meant for the add-on log
//		for _, n := range s.Notes { log.Info(n) }
//		cfg, err := config.Load(s.ConfigFile) // when not empty
//		s.Configure(&cfg)                      // then cfg.Validate()
//	}
//
// # Which broker
//
// The option mqtt_broker chooses:
//
//   - auto (default): the broker of the Supervisor's MQTT service (the
//     Mosquitto add-on, with a user the Supervisor made for us) when Home
//     Assistant has one, else the embedded broker. This is what
//     `services: ["mqtt:want"]` in config.yaml means.
//   - embedded: always fleet2mqtt's own broker, on port 1883 of the
//     add-on. Home Assistant's MQTT integration then connects to it as one
//     of mqtt_users: anonymous clients are accepted from inside the
//     container only, and Home Assistant is not inside it.
//   - external: the broker at mqtt_url, with mqtt_username and
//     mqtt_password.
//
// The Supervisor answers GET /services/mqtt with
//
//	{"result":"ok","data":{"host":"core-mosquitto","port":1883,"ssl":false,
//	 "username":"addons","password":"…","protocol":"3.1.1","addon":"core_mosquitto"}}
//
// when a broker add-on provides the service, and 400 ("Service not
// enabled") when none does. fleet2mqtt always speaks MQTT 5, which
// Mosquitto accepts whatever the service's protocol says.
//
// # Commands
//
// The options commands, command_categories and command_users are the
// commands section of fleet2mqtt's configuration (enabled, categories,
// mqtt_users); they win over that section in fleet2mqtt.yaml, whose other
// keys (rate limit, proxy API) still apply. command_users must be users
// of mqtt_users on the embedded broker, which lets only them publish
// commands; other brokers decide with their own ACL, and the notes say so.
//
// # Files
//
// The add-on sees /data (persistent, ours: options.json, certificates we
// make, retained MQTT state), /ssl (read-only: the certificates of Home
// Assistant's Let's Encrypt or DuckDNS add-on) and /config (the add-on's
// own folder, addon_configs/<repo>_fleet2mqtt on the host). A complete
// fleet2mqtt configuration file may be put there as fleet2mqtt.yaml for
// the keys the options do not cover; the options win where both speak.
// Tesla's vehicle CA bundle is part of the image.
package addon
