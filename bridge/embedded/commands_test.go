package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
)

func TestMayCommand(t *testing.T) {
	g := newGuard(&Config{}, testLogger(t))
	g.protect("tesla")
	client := func(user string) *mqtt.Client {
		cl := &mqtt.Client{}
		cl.Properties.Username = []byte(user)
		return cl
	}
	topic := "tesla/" + testVIN + "/command/flash_lights"
	if g.mayCommand(client("alice"), topic) {
		t.Error("a command topic is open before AllowCommands")
	}
	g.commands.Store(&CommandACL{Filters: []string{"tesla/+/command/+", "tesla/+/set/+"}, Users: []string{"alice"}})
	for _, tc := range []struct {
		user, topic string
		want        bool
	}{
		{"alice", topic, true},
		{"alice", "tesla/" + testVIN + "/set/charging", true},
		{"alice", topic + "/result", false},
		{"alice", "tesla/" + testVIN + "/Soc", false},
		{"alice", "tesla/bridge/state", false},
		{"bob", topic, false},
		{"", topic, false},
	} {
		if got := g.mayCommand(client(tc.user), tc.topic); got != tc.want {
			t.Errorf("user %q on %s: %t, want %t", tc.user, tc.topic, got, tc.want)
		}
	}
	g.commands.Store(&CommandACL{Filters: []string{"tesla/+/command/+"}, Anonymous: true})
	if !g.mayCommand(client(""), topic) || g.mayCommand(client("alice"), topic) {
		t.Error("anonymous: only clients without a user name may command")
	}
}

// TestSubscribePublications: the subscriber learns who published and
// whether the message is retained.
func TestSubscribePublications(t *testing.T) {
	cfg := testConfig()
	cfg.Users = []User{{Name: "alice", Password: "pw"}}
	b := startBroker(t, cfg, "")
	b.AllowCommands(CommandACL{Filters: []string{"tesla/+/command/+"}, Users: []string{"alice"}})
	got := make(chan Publication, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.SubscribePublications(ctx, "tesla/+/command/+", func(p Publication) { got <- p }); err != nil {
		t.Fatal(err)
	}
	alice := mustDial(t, b.Addr(ListenerTCP), &paho.Connect{Username: "alice", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	topic := "tesla/" + testVIN + "/command/honk_horn"
	for _, retain := range []bool{false, true} {
		if _, err := alice.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p.User != "alice" || p.Topic != topic || string(p.Payload) != "{}" || p.Retained != retain {
				t.Errorf("publication %+v, want alice's on %s, retained %t", p, topic, retain)
			}
		case <-time.After(wait):
			t.Fatal("nothing delivered")
		}
	}
}
