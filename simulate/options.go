package simulate

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

// Options are the settings of the simulate command, one per flag: each
// field's comment names its flag, and so do the errors of Validate and
// Target, since that is what the person who gets them typed.
type Options struct {
	Server     string        // --server: the vehicle listener, host:port or a wss:// URL
	ServerName string        // --server-name: the name the server certificate must carry
	CA         string        // --ca: PEM file of the server's CA; empty means ca.pem in CertDir
	CertDir    string        // --certs: development PKI directory (certs.WriteDevDir)
	Cars       int           // --cars
	Duration   time.Duration // --duration: stop after this long; zero runs until interrupted

	// Scenario mode.
	Scenario      string        // --scenario: one of Scenarios
	Speed         float64       // --speed: speed-up factor
	Interval      time.Duration // --interval: simulated time between two records
	LegacyStrings bool          // --legacy-strings
	Seed          uint64        // --seed
	Network       string        // --network: X-Network-Interface

	// Load mode (--load).
	Load         bool
	Inflight     int           // --inflight
	Records      int           // --records
	Rate         float64       // --rate: open loop, records/s across the cars for Duration
	Fields       int           // --fields
	MQTT         string        // --mqtt: broker host:port to count on
	MQTTTopic    string        // --mqtt-topic
	MQTTQoS      uint          // --mqtt-qos
	MQTTUser     string        // --mqtt-username
	MQTTPassword string        // --mqtt-password
	ServerPID    int           // --server-pid
	BrokerPID    int           // --broker-pid: an external broker's process, for its CPU time
	Settle       time.Duration // --settle
	Hold         time.Duration // --hold

	// inflightGiven is whether --inflight was given (Validate): with
	// --rate, the open loop's own window applies otherwise.
	inflightGiven bool
}

// loadOnly are the flags that only mean something with --load, and
// scenarioOnly those that only mean something without.
var (
	loadOnly     = []string{"inflight", "records", "rate", "fields", "mqtt", "mqtt-topic", "mqtt-qos", "mqtt-username", "mqtt-password", "server-pid", "broker-pid", "settle", "hold"}
	scenarioOnly = []string{"scenario", "speed", "interval", "legacy-strings", "seed", "network"}
)

// Validate reports the first usage error. given holds the names of the
// flags given on the command line, so that a flag of the other mode is
// refused even when it was given its default value.
func (o *Options) Validate(given map[string]bool) error {
	if o.CertDir == "" {
		return errors.New("--certs DIR is required (make one with fleet2mqtt dev-certs)")
	}
	if o.Cars < 1 {
		return fmt.Errorf("--cars %d: must be at least 1", o.Cars)
	}
	if o.Duration < 0 {
		return fmt.Errorf("--duration %v: must not be negative", o.Duration)
	}
	mode, other := "--load", scenarioOnly
	if !o.Load {
		mode, other = "scenario mode", loadOnly
	}
	for _, name := range other {
		if given[name] {
			return fmt.Errorf("--%s does not apply in %s", name, mode)
		}
	}
	o.inflightGiven = given["inflight"]
	if o.Load {
		switch {
		case o.Inflight < 1:
			return fmt.Errorf("--inflight %d: must be at least 1", o.Inflight)
		case o.Records < 0:
			return fmt.Errorf("--records %d: must not be negative", o.Records)
		case o.Fields < 1:
			return fmt.Errorf("--fields %d: must be at least 1", o.Fields)
		case o.Rate < 0:
			return fmt.Errorf("--rate %v: must be a positive number of records per second", o.Rate)
		case o.Rate > 0 && o.Duration <= 0:
			return errors.New("--rate needs --duration, how long to send")
		case o.Rate > 0 && given["records"]:
			return errors.New("--records does not apply with --rate (records = rate × duration)")
		case o.MQTTQoS > 2:
			return fmt.Errorf("--mqtt-qos %d: must be 0, 1 or 2", o.MQTTQoS)
		case o.ServerPID < 0:
			return fmt.Errorf("--server-pid %d: not a process id", o.ServerPID)
		case o.BrokerPID < 0:
			return fmt.Errorf("--broker-pid %d: not a process id", o.BrokerPID)
		}
		return nil
	}
	if _, err := ParseScenario(o.Scenario); err != nil {
		return fmt.Errorf("--scenario: %w", err)
	}
	if !(o.Speed > 0) {
		return fmt.Errorf("--speed %v: must be above 0", o.Speed)
	}
	if o.Interval <= 0 {
		return fmt.Errorf("--interval %v: must be positive", o.Interval)
	}
	return nil
}

// Target is where and as whom the simulated cars connect.
type Target struct {
	// URL is the server's WebSocket address.
	URL string
	// TLS trusts the server's CA; each car adds its own certificate
	// (CarConfigFor).
	TLS *tls.Config
	// Identities are the cars, one each.
	Identities []Identity
}

// Target reads the server's CA and the cars' certificates. It warns on log
// when there are fewer certificates than cars and no vehicle CA key to
// issue more, so that cars share identities.
func (o *Options) Target(log *slog.Logger) (Target, error) {
	url := o.Server
	if !strings.HasPrefix(url, "wss://") {
		if _, _, err := net.SplitHostPort(url); err != nil {
			return Target{}, fmt.Errorf("--server %q: want host:port or a wss:// URL", o.Server)
		}
		url = "wss://" + url + "/"
	}
	caFile := o.CA
	if caFile == "" {
		caFile = filepath.Join(o.CertDir, certs.CAFile)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && o.CA == "" {
			return Target{}, fmt.Errorf("no %s in %s: give the server's CA with --ca", certs.CAFile, o.CertDir)
		}
		return Target{}, fmt.Errorf("--ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return Target{}, fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
	}
	bundle, err := certs.LoadDir(o.CertDir)
	if err != nil {
		return Target{}, fmt.Errorf("--certs: %w", err)
	}
	ids, reused, err := Identities(bundle, o.Cars)
	if err != nil {
		return Target{}, fmt.Errorf("--certs %s: %w", o.CertDir, err)
	}
	if reused {
		log.Warn("fewer car certificates than cars and no vehicle CA key to issue more: cars share identities",
			"certificates", len(bundle.Vehicles), "cars", o.Cars)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
	return Target{URL: url, TLS: tc, Identities: ids}, nil
}

// NewCars makes one car per identity of t, for scenario mode.
func (o *Options) NewCars(t Target, log *slog.Logger) ([]*Car, error) {
	cars := make([]*Car, len(t.Identities))
	for i, id := range t.Identities {
		car, err := NewCar(CarConfigFor(CarConfig{
			URL:              t.URL,
			TLS:              t.TLS,
			NetworkInterface: o.Network,
			LegacyStrings:    o.LegacyStrings,
			Log:              log,
		}, id))
		if err != nil {
			return nil, err
		}
		cars[i] = car
	}
	return cars, nil
}

// PlayConfig is what a fleet of cars plays in scenario mode.
func (o *Options) PlayConfig(cars int, log *slog.Logger) PlayConfig {
	return PlayConfig{
		Scenario: Scenario(o.Scenario),
		Seed:     o.Seed,
		Speed:    o.Speed,
		Interval: o.Interval,
		Log:      log,
		// About one line a second in all, however many cars.
		LogEvery: DefaultLogEvery * time.Duration(max(1, cars/5)),
	}
}

// LoadConfig is the load run against t (--load).
func (o *Options) LoadConfig(t Target, log *slog.Logger) LoadConfig {
	inflight, duration, maxWait := o.Inflight, time.Duration(0), o.Duration
	if o.Rate > 0 {
		duration, maxWait = o.Duration, o.Duration+DefaultLoadMaxWait
		if !o.inflightGiven {
			inflight = 0 // the open loop's default window
		}
	}
	return LoadConfig{
		URL:        t.URL,
		TLS:        t.TLS,
		Identities: t.Identities,
		Inflight:   inflight,
		Records:    o.Records,
		Rate:       o.Rate,
		Duration:   duration,
		Fields:     o.Fields,
		MQTT: MQTTOptions{
			Addr:     o.MQTT,
			Topic:    o.MQTTTopic,
			QoS:      byte(o.MQTTQoS),
			Username: o.MQTTUser,
			Password: o.MQTTPassword,
		},
		Settle:    o.Settle,
		ServerPID: o.ServerPID,
		BrokerPID: o.BrokerPID,
		Hold:      o.Hold,
		MaxWait:   maxWait,
		Log:       log,
	}
}

// FleetStats adds up the counts of cars.
func FleetStats(cars []*Car) CarStats {
	var total CarStats
	for _, c := range cars {
		s := c.Stats()
		total.Connects += s.Connects
		total.Sent += s.Sent
		total.Written += s.Written
		total.Resent += s.Resent
		total.Acked += s.Acked
		total.Rejected += s.Rejected
		total.UnmatchedAcks += s.UnmatchedAcks
		total.Pings += s.Pings
	}
	return total
}
