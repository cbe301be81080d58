package addon

import (
	"strings"
	"testing"

	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// TestCommandOptions: the add-on's command options become the commands
// section of fleet2mqtt's configuration, which then validates.
func TestCommandOptions(t *testing.T) {
	opts := DefaultOptions()
	opts.MQTTBroker = BrokerEmbedded
	opts.MQTTUsers = []User{{Name: "homeassistant", Password: "pw"}, {Name: "nodered", Password: "pw2"}}
	opts.Commands = true
	opts.CommandCategories = []string{"charging", "access"}
	opts.CommandUsers = []string{"homeassistant"}

	t.Run("built-in broker", func(t *testing.T) {
		s, err := Apply(opts, nil, testPaths(t, `{}`))
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		s.Configure(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		want := command.Categories{Charging: true, Access: true}
		if c := cfg.Commands; !c.Enabled || c.Categories != want || len(c.MQTTUsers) != 1 || c.MQTTUsers[0] != "homeassistant" || c.AllowAnonymous {
			t.Errorf("commands section %+v", c)
		}
		if !cfg.Discovery().Controls.Enabled || !cfg.Discovery().Controls.Access || cfg.Discovery().Controls.Climate {
			t.Errorf("Home Assistant controls %+v do not follow the categories", cfg.Discovery().Controls)
		}
		if !hasNote(s, "sent by MQTT users homeassistant") {
			t.Errorf("notes %q", s.Notes)
		}
	})

	t.Run("a command user who cannot log in", func(t *testing.T) {
		o := opts
		o.CommandUsers = []string{"homeassistant", "mallory"}
		_, err := Apply(o, nil, testPaths(t, `{}`))
		if err == nil || !strings.Contains(err.Error(), `command_users[1]: "mallory" is not a user of mqtt_users`) {
			t.Errorf("error %v", err)
		}
	})

	t.Run("Home Assistant's broker decides", func(t *testing.T) {
		o := opts
		o.MQTTBroker = BrokerAuto
		svc := &Service{Host: "core-mosquitto", Port: 1883, Username: "addons", Password: "pw"}
		s, err := Apply(o, svc, testPaths(t, `{}`))
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		s.Configure(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if !cfg.Commands.Enabled || !hasNote(s, "unless its ACL restricts tesla/+/command/+") {
			t.Errorf("commands %+v notes %q", cfg.Commands, s.Notes)
		}
	})

	t.Run("off by default", func(t *testing.T) {
		s, err := Apply(DefaultOptions(), nil, testPaths(t, `{}`))
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Commands.Enabled = true // as fleet2mqtt.yaml may say: the options win
		s.Configure(&cfg)
		if cfg.Commands.Enabled || cfg.Commands.Categories != command.DefaultSettings().Categories {
			t.Errorf("commands %+v, want off with fleet2mqtt's default categories", cfg.Commands)
		}
		if hasNote(s, "vehicle commands") {
			t.Errorf("notes about commands while they are off: %q", s.Notes)
		}
	})

	t.Run("invalid options", func(t *testing.T) {
		for _, tc := range []struct {
			json, want string
		}{
			{`{"command_categories":["charging","unlock"]}`, `command_categories[1]: "unlock" is not charging, climate, security, access, alerts`},
			{`{"command_users":[""]}`, "command_users[0]: is empty"},
			{`{"commands":"yes"}`, "commands"},
		} {
			_, err := LoadOptions(writeOptions(t, t.TempDir(), tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want %q", tc.json, err, tc.want)
			}
		}
	})
}

// TestCommandCategoryChoicesAreFleet2mqtts: every choice of
// command_categories is a category of fleet2mqtt's commands, and the
// schema's list offers exactly them.
func TestCommandCategoryChoicesAreFleet2mqtts(t *testing.T) {
	for _, c := range CommandCategoryChoices {
		if commandCategories([]string{c}) == (command.Categories{}) || !commandCategories([]string{c}).On(c) {
			t.Errorf("%s is not a category of the commands section", c)
		}
	}
	schema := readConfig(t).Schema["command_categories"]
	list, ok := schema.([]any)
	if !ok || len(list) != 1 {
		t.Fatalf("schema of command_categories %#v, want a list of one list(…)", schema)
	}
	if want := "list(" + strings.Join(CommandCategoryChoices, "|") + ")"; list[0] != want {
		t.Errorf("schema offers %v, want %s", list[0], want)
	}
}
