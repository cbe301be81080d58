package addon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeOptions(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "options.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOptions(t *testing.T) {
	full := DefaultOptions()
	full.Hostname = "tesla.example.com"
	full.Certificate = CertificateDevelopment
	full.MQTTBroker = BrokerExternal
	full.MQTTURL = "mqtts://broker.lan:8883"
	full.MQTTUsername = "fleet"
	full.MQTTPassword = "pw"
	full.MQTTUsers = []User{{Name: "homeassistant", Password: "x"}}
	full.TopicPrefix = "cars"
	full.Discovery = false
	full.DiscoveryPrefix = "ha"
	full.CompatLayout = true
	full.LogLevel = "debug"

	sslPath := DefaultOptions()
	sslPath.CertFile = "/ssl/fullchain.pem"

	tests := []struct {
		name string
		json string
		want Options
	}{
		{"empty object keeps defaults", `{}`, DefaultOptions()},
		{"supervisor defaults", `{"certificate":"ssl","certfile":"fullchain.pem","keyfile":"privkey.pem","mqtt_broker":"auto","mqtt_users":[],"topic_prefix":"tesla","discovery":true,"discovery_prefix":"homeassistant","compat_layout":false,"log_level":"info"}`, DefaultOptions()},
		{"every option", `{"hostname":"tesla.example.com","certificate":"development","certfile":"fullchain.pem","keyfile":"privkey.pem",
			"mqtt_broker":"external","mqtt_url":"mqtts://broker.lan:8883","mqtt_username":"fleet","mqtt_password":"pw",
			"mqtt_users":[{"name":"homeassistant","password":"x"}],"topic_prefix":"cars","discovery":false,
			"discovery_prefix":"ha","compat_layout":true,"log_level":"debug"}`, full},
		{"full ssl path", `{"certfile":"/ssl/fullchain.pem"}`, sslPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadOptions(writeOptions(t, t.TempDir(), tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // every one must be in the message
	}{
		{"unknown keys named", `{"hostnam":"x","mqtt_port":1883,"log_level":"info"}`, []string{"unknown option", "hostnam, mqtt_port", "known: hostname"}},
		{"unknown user key", `{"mqtt_users":[{"name":"a","password":"b","admin":true}]}`, []string{`mqtt_users: unknown field "admin"`}},
		{"not an object", `["a"]`, []string{"not a JSON object"}},
		{"truncated", `{"hostname":`, []string{"not a JSON object"}},
		{"wrong type", `{"discovery":"yes"}`, []string{"discovery", "string", "bool"}},
		{"bad certificate", `{"certificate":"acme"}`, []string{"certificate", `"acme"`, "ssl or development"}},
		{"empty certfile", `{"certfile":""}`, []string{"certfile: must be set"}},
		{"certfile outside ssl", `{"keyfile":"../data/options.json"}`, []string{"keyfile", "inside Home Assistant's ssl folder"}},
		{"absolute certfile elsewhere", `{"certfile":"/etc/passwd"}`, []string{"certfile", "inside"}},
		{"bad broker", `{"mqtt_broker":"mosquitto"}`, []string{"mqtt_broker", "auto, embedded or external"}},
		{"external without url", `{"mqtt_broker":"external"}`, []string{"mqtt_url: must be set"}},
		{"user without password", `{"mqtt_users":[{"name":"a","password":""}]}`, []string{"mqtt_users[0]"}},
		{"bad log level", `{"log_level":"trace"}`, []string{"log_level", `"trace"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeOptions(t, t.TempDir(), tt.json)
			_, err := LoadOptions(path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadOptionsUnknownIsSentinel(t *testing.T) {
	_, err := LoadOptions(writeOptions(t, t.TempDir(), `{"nope":1}`))
	if !errors.Is(err, ErrUnknownOption) {
		t.Fatalf("error %v is not ErrUnknownOption", err)
	}
}

func TestLoadOptionsMissingFile(t *testing.T) {
	_, err := LoadOptions(filepath.Join(t.TempDir(), "options.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want not exist", err)
	}
}

func TestOptionKeysMatchStruct(t *testing.T) {
	typ := reflect.TypeFor[Options]()
	var names []string
	for i := range typ.NumField() {
		names = append(names, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
	}
	if !reflect.DeepEqual(names, optionKeys()) {
		t.Errorf("Options json names %v\noptionKeys         %v", names, optionKeys())
	}
}

func TestUserStringHidesPassword(t *testing.T) {
	u := User{Name: "ha", Password: "hunter2"}
	for _, s := range []string{u.String(), fmt.Sprint(u), fmt.Sprintf("%+v", []User{u})} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q shows the password", s)
		}
	}
}
