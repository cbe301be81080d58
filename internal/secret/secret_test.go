package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSecretHides(t *testing.T) {
	type conf struct {
		User     string `json:"user" yaml:"user"`
		Password Secret `json:"password" yaml:"password"`
	}
	c := conf{User: "ha", Password: "s3cret"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "password", c.Password, "conf", c)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", c),
		"%+v":  fmt.Sprintf("%+v", c),
		"%#v":  fmt.Sprintf("%#v", c),
		"%s":   fmt.Sprintf("%s", c.Password),
		"slog": logged.String(),
		"json": string(j),
		"yaml": string(y),
	} {
		if strings.Contains(out, "s3cret") || !strings.Contains(out, Redacted) {
			t.Errorf("%s: %s", name, out)
		}
	}
	if got := Secret("").String(); got != "" {
		t.Errorf("an empty secret reads %q", got)
	}
	if got := c.Password.Reveal(); got != "s3cret" {
		t.Errorf("Reveal = %q", got)
	}
}

func TestSecretDecodes(t *testing.T) {
	var c struct {
		Password Secret `json:"password" yaml:"password"`
	}
	if err := yaml.Unmarshal([]byte("password: s3cret\n"), &c); err != nil || c.Password.Reveal() != "s3cret" {
		t.Errorf("yaml: %q, %v", c.Password.Reveal(), err)
	}
	if err := json.Unmarshal([]byte(`{"password":"pa55"}`), &c); err != nil || c.Password.Reveal() != "pa55" {
		t.Errorf("json: %q, %v", c.Password.Reveal(), err)
	}
}
