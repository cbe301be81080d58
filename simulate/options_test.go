package simulate

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

// scenarioOptions are the defaults the simulate command starts from.
func scenarioOptions() Options {
	return Options{
		Server: "127.0.0.1:8443", CertDir: "pki", Cars: 1,
		Scenario: string(ScenarioMixed), Speed: 1, Interval: DefaultInterval, Seed: 1, Network: DefaultNetworkInterface,
		Inflight: 1, Records: DefaultLoadRecords, Fields: DefaultLoadFields, MQTTTopic: DefaultMQTTTopic, Settle: DefaultSettle,
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Options)
		given []string
		want  string // "" for valid
	}{
		{"scenario defaults", func(*Options) {}, nil, ""},
		{"load defaults", func(o *Options) { o.Load = true }, []string{"load"}, ""},
		{"no certs", func(o *Options) { o.CertDir = "" }, nil, "--certs DIR is required"},
		{"no cars", func(o *Options) { o.Cars = 0 }, nil, "--cars 0: must be at least 1"},
		{"negative duration", func(o *Options) { o.Duration = -time.Second }, nil, "--duration -1s"},
		{"load flag in scenario mode, even at its default", func(*Options) {}, []string{"inflight"}, "--inflight does not apply in scenario mode"},
		{"scenario flag with --load", func(o *Options) { o.Load = true }, []string{"load", "scenario"}, "--scenario does not apply in --load"},
		{"inflight", func(o *Options) { o.Load, o.Inflight = true, 0 }, nil, "--inflight 0"},
		{"records", func(o *Options) { o.Load, o.Records = true, -1 }, nil, "--records -1"},
		{"fields", func(o *Options) { o.Load, o.Fields = true, 0 }, nil, "--fields 0"},
		{"qos", func(o *Options) { o.Load, o.MQTTQoS = true, 3 }, nil, "--mqtt-qos 3: must be 0, 1 or 2"},
		{"pid", func(o *Options) { o.Load, o.ServerPID = true, -2 }, nil, "--server-pid -2"},
		{"scenario", func(o *Options) { o.Scenario = "fly" }, nil, `--scenario: unknown scenario "fly"`},
		{"speed", func(o *Options) { o.Speed = 0 }, nil, "--speed 0: must be above 0"},
		{"interval", func(o *Options) { o.Interval = 0 }, nil, "--interval 0s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := scenarioOptions()
			tt.edit(&o)
			given := map[string]bool{}
			for _, g := range tt.given {
				given[g] = true
			}
			err := o.Validate(given)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)) {
				t.Errorf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOptionsTarget(t *testing.T) {
	dir := t.TempDir()
	if err := certs.WriteDevDir(dir, nil, []string{TestVIN(1)}, false); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	o := scenarioOptions()
	o.CertDir, o.Cars, o.ServerName = dir, 2, "car.example"
	target, err := o.Target(log)
	if err != nil {
		t.Fatal(err)
	}
	if target.URL != "wss://127.0.0.1:8443/" || target.TLS.ServerName != "car.example" || target.TLS.RootCAs == nil || len(target.Identities) != 2 {
		t.Errorf("target %+v", target)
	}
	cars, err := o.NewCars(target, log)
	if err != nil || len(cars) != 2 || cars[0].VIN() != target.Identities[0].VIN {
		t.Errorf("NewCars: %v, %v", cars, err)
	}

	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.Server = "wss://example/" }, ""},
		{func(o *Options) { o.Server = "nowhere" }, `--server "nowhere": want host:port or a wss:// URL`},
		{func(o *Options) { o.CertDir = filepath.Join(dir, "none") }, "no ca.pem in "},
		{func(o *Options) { o.CA = filepath.Join(dir, "missing.pem") }, "--ca: open "},
		{func(o *Options) { o.CA = notPEM }, "--ca: " + notPEM + " holds no PEM certificate"},
	} {
		o := scenarioOptions()
		o.CertDir = dir
		tt.edit(&o)
		_, err := o.Target(log)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)) {
			t.Errorf("Target(%+v): %v, want %q", o, err, tt.want)
		}
	}
}

func TestOptionsConfigs(t *testing.T) {
	o := scenarioOptions()
	o.Load, o.Inflight, o.MQTT, o.MQTTQoS, o.MQTTPassword, o.Duration = true, 4, "127.0.0.1:1883", 1, "pw", time.Minute
	lc := o.LoadConfig(Target{URL: "wss://x/"}, nil)
	if lc.URL != "wss://x/" || lc.Inflight != 4 || lc.MQTT.Addr != o.MQTT || lc.MQTT.QoS != 1 || lc.MQTT.Password != "pw" || lc.MaxWait != time.Minute {
		t.Errorf("LoadConfig %+v", lc)
	}
	if pc := o.PlayConfig(10, nil); pc.LogEvery != 2*DefaultLogEvery || pc.Scenario != ScenarioMixed {
		t.Errorf("PlayConfig for 10 cars: %+v", pc)
	}
}

func TestFleetStats(t *testing.T) {
	var a, b Car
	for i, c := range []*Car{&a, &b} {
		n := int64(i + 1)
		for _, v := range []interface{ Add(int64) int64 }{&c.stats.connects, &c.stats.sent, &c.stats.written, &c.stats.resent,
			&c.stats.acked, &c.stats.rejected, &c.stats.unmatched, &c.stats.pings} {
			v.Add(n)
		}
	}
	want := CarStats{3, 3, 3, 3, 3, 3, 3, 3}
	if got := FleetStats([]*Car{&a, &b}); got != want {
		t.Errorf("FleetStats = %+v, want %+v", got, want)
	}
}
