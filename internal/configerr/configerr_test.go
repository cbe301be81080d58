package configerr

import (
	"errors"
	"io/fs"
	"testing"
)

func TestPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"one key", Errorf("listen", "%q is not host:port", "x"), `mqtt.embedded.listen: "x" is not host:port`},
		{"key in the sentence", Errorf("compat.exclusive", "true needs %s: true", Key("compat.enabled")), "mqtt.embedded.compat.exclusive: true needs mqtt.embedded.compat.enabled: true"},
		{"pair", Pair("include", "exclude", "%q is in both", "Soc"), `mqtt.embedded.include and mqtt.embedded.exclude: "Soc" is in both`},
		{"plain error", errors.New("url: missing"), "mqtt.embedded.url: missing"},
		{"joined", errors.Join(Errorf("a", "bad"), Errorf("b", "worse")), "mqtt.embedded.a: bad\nmqtt.embedded.b: worse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: sections nest (embedded in mqtt).
			if got := Prefix("mqtt", Prefix("embedded", tc.err)).Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if Prefix("mqtt", nil) != nil {
		t.Error("Prefix of nil is not nil")
	}
}

func TestUnwrap(t *testing.T) {
	err := Prefix("mqtt", Errorf("tls.cert_file", "%w", fs.ErrNotExist))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v does not wrap fs.ErrNotExist", err)
	}
	if got, want := err.Error(), "mqtt.tls.cert_file: file does not exist"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
