package embedded

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
)

// MQTT 5 reason codes the tests expect.
const (
	reasonBadCredentials = 0x86
	reasonNotAuthorized  = 0x87
)

// TestACL: clients may not publish vehicle data, the bridge's state or $
// topics (mochi itself drops client publishes on $ topics without an
// answer; TestMayPublish covers them); Home Assistant's birth message and other topics pass. A refused
// QoS 1 publish gets a PUBACK with a failure reason code; a refused QoS 0
// publish is dropped. Either way a subscriber never sees it: the test
// publishes a genuine message after the fake one and checks that the
// genuine one is the first to arrive.
func TestACL(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	broker.Protect("telemetry")
	addr := broker.Addr(ListenerTCP)
	sub := mustDial(t, addr, nil)
	sub.subscribe(t, "#")
	faker := mustDial(t, addr, nil)

	refused := []string{
		"tesla/" + testVIN + "/Soc",
		"tesla/" + testVIN + "/state",
		"tesla/bridge/state",
		"tesla",
		"telemetry/" + testVIN + "/v/Soc",
	}
	for _, topic := range refused {
		for _, qos := range []byte{1, 0} {
			resp, err := faker.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: qos, Retain: true, Payload: []byte("5")})
			if qos == 1 {
				if err == nil || resp == nil || resp.ReasonCode != reasonNotAuthorized {
					t.Errorf("QoS 1 publish on %s: response %+v, error %v; want reason code 0x87 (not authorized)", topic, resp, err)
				}
			} else if err != nil {
				t.Fatalf("QoS 0 publish on %s: %v", topic, err)
			}
			genuine := []pubsub.Message{{Topic: "tesla/" + testVIN + "/Soc", Payload: []byte("80"), QoS: 1}}
			if err := broker.Publish(t.Context(), genuine); err != nil {
				t.Fatal(err)
			}
			if m := sub.next(t); m.Topic != genuine[0].Topic || string(m.Payload) != "80" {
				t.Fatalf("after a fake QoS %d publish on %s the subscriber got %s %q", qos, topic, m.Topic, m.Payload)
			}
		}
	}

	for _, topic := range []string{"homeassistant/status", "homeassistant/sensor/x/config", "teslamate/cars/1/soc", "tesla2/x", "other/tesla/x"} {
		resp, err := faker.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("online")})
		if err != nil || resp.ReasonCode >= 0x80 {
			t.Errorf("publish on %s refused: %+v %v", topic, resp, err)
			continue
		}
		if m := sub.next(t); m.Topic != topic || string(m.Payload) != "online" {
			t.Errorf("subscriber got %s %q, want %s online", m.Topic, m.Payload, topic)
		}
	}
}

// TestWillOnProtectedTopic: a client cannot plant a last will that would
// speak for the bridge.
func TestWillOnProtectedTopic(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	addr := broker.Addr(ListenerTCP)
	_, ca, err := dialClient(t, addr, &paho.Connect{WillMessage: &paho.WillMessage{Topic: "tesla/bridge/state", Payload: []byte("offline"), Retain: true}})
	if err == nil || ca == nil || ca.ReasonCode != reasonNotAuthorized {
		t.Errorf("will on tesla/bridge/state: connack %+v, error %v; want reason code 0x87", ca, err)
	}
	c, _, err := dialClient(t, addr, &paho.Connect{WillMessage: &paho.WillMessage{Topic: "nodered/status", Payload: []byte("offline")}})
	if err != nil {
		t.Fatalf("will on an open topic refused: %v", err)
	}
	c.Disconnect(&paho.Disconnect{})
}

func TestAuthentication(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("hashed secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Users = []User{{Name: "homeassistant", Password: "s3cret"}, {Name: "nodered", Password: Secret(hash)}}
	cfg.AllowAnonymous = AnonymousNever
	broker := startBroker(t, cfg, "")
	addr := broker.Addr(ListenerTCP)

	tests := []struct {
		name     string
		user     string
		password string
		ok       bool
	}{
		{"user and password", "homeassistant", "s3cret", true},
		{"bcrypt hash", "nodered", "hashed secret", true},
		{"wrong password", "homeassistant", "s3cret!", false},
		{"empty password", "homeassistant", "", false},
		{"hash given as password", "nodered", string(hash), false},
		{"unknown user", "mallory", "s3cret", false},
		{"anonymous, never allowed", "", "", false},
		{"password without user", "", "s3cret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := &paho.Connect{Username: tt.user, UsernameFlag: tt.user != "", Password: []byte(tt.password), PasswordFlag: tt.password != ""}
			c, ca, err := dialClient(t, addr, cp)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.Disconnect(&paho.Disconnect{})
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if ca == nil || (ca.ReasonCode != reasonBadCredentials && ca.ReasonCode != reasonNotAuthorized) {
				t.Errorf("connack %+v, error %v; want a refusal for bad credentials", ca, err)
			}
		})
	}
}

// TestAnonymousFromLoopback: by default, clients without credentials are
// welcome from this machine. (Tests may only use loopback; the decision
// for other addresses is tested in TestAnonymousAllowed.)
func TestAnonymousFromLoopback(t *testing.T) {
	for _, policy := range []Anonymous{AnonymousLoopback, AnonymousAlways} {
		cfg := testConfig()
		cfg.AllowAnonymous = policy
		broker := startBroker(t, cfg, "")
		c := mustDial(t, broker.Addr(ListenerTCP), nil)
		c.Disconnect(&paho.Disconnect{})
	}
}

func TestAnonymousAllowed(t *testing.T) {
	tests := []struct {
		remote                  string
		loopback, always, never bool
	}{
		{"127.0.0.1:50000", true, true, false},
		{"127.8.9.10:50000", true, true, false},
		{"[::1]:50000", true, true, false},
		{"[::ffff:127.0.0.1]:50000", true, true, false},
		{"192.168.1.20:50000", false, true, false},
		{"172.30.32.2:50000", false, true, false}, // Home Assistant's add-on network
		{"203.0.113.7:1883", false, true, false},
		{"[2001:db8::1]:50000", false, true, false},
		{"[fe80::1%eth0]:50000", false, true, false},
		{"[::ffff:10.0.0.1]:50000", false, true, false},
		{"localhost:50000", false, true, false}, // only addresses count
		{"", false, true, false},
		{"not an address", false, true, false},
	}
	for _, tt := range tests {
		for policy, want := range map[Anonymous]bool{AnonymousLoopback: tt.loopback, AnonymousAlways: tt.always, AnonymousNever: tt.never} {
			if got := anonymousAllowed(policy, tt.remote); got != want {
				t.Errorf("%s from %q: %t, want %t", policy, tt.remote, got, want)
			}
		}
	}
}

func TestMayPublish(t *testing.T) {
	g := newGuard(&Config{}, testLogger(t))
	g.protect("tesla")
	g.protect("home/cars")
	for topic, want := range map[string]bool{
		"tesla": false, "tesla/": false, "tesla/x": false, "tesla/bridge/state": false,
		"home/cars": false, "home/cars/x/y": false, "$SYS/x": false, "$share/g/x": false,
		"teslax": true, "tesla2/x": true, "home/carsx": true, "home": true, "x/tesla/y": true,
		"homeassistant/status": true, "": true,
	} {
		if got := g.mayPublish(topic); got != want {
			t.Errorf("mayPublish(%q) = %t, want %t", topic, got, want)
		}
	}
}

func TestPasswordMatches(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		stored, given string
		want          bool
	}{
		{"pw", "pw", true}, {"pw", "pW", false}, {"pw", "", false}, {"pw", "pw ", false},
		{string(hash), "pw", true}, {string(hash), "px", false}, {string(hash), string(hash), false},
		{"$2a$broken", "$2a$broken", false},
	} {
		if got := passwordMatches([]byte(tt.stored), []byte(tt.given)); got != tt.want {
			t.Errorf("stored %q given %q: %t, want %t", tt.stored, tt.given, got, tt.want)
		}
	}
}
