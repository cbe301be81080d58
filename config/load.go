package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads path (if not empty) over the defaults and validates the
// result. Unknown keys are errors, so that a misspelt option never
// silently does nothing.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.Validate()
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := Decode(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Decode reads the YAML in raw over cfg, refusing unknown keys. It does
// not validate.
func Decode(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return cleanYAMLError(err)
	}
	return nil
}

// cleanYAMLError makes yaml.v3's messages read like ours: "line 3: field
// listn not found in type ingest.Config" becomes "line 3: unknown key
// \"listn\"".
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if before, after, ok := strings.Cut(m, "field "); ok {
			if key, _, ok := strings.Cut(after, " not found in type"); ok {
				m = before + fmt.Sprintf("unknown key %q", key)
			}
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "; "))
}
