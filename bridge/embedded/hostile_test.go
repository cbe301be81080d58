package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/discovery"
)

const reasonQuotaExceeded = 0x97

// TestDiscoveryConfigsOwned: the Home Assistant discovery configs of the
// bridge's cars are written by the bridge only, like the vehicle topics
// (clients may remove them);
// Home Assistant's status topic, other devices' configs and another
// installation's stay open to every client.
func TestDiscoveryConfigsOwned(t *testing.T) {
	broker, err := New(testConfig(), t.TempDir(), testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ha := discovery.DefaultConfig()
	broker.ProtectTopics(func(topic string) bool { return discovery.Owns(ha, topic) })
	if err := broker.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	faker := mustDial(t, broker.Addr(ListenerTCP), nil)

	own := discovery.Topic(ha, testVIN)
	for _, topic := range []string{own, discovery.Topic(ha, "LRW3E7EK4NC000002")} {
		resp, err := faker.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(`{"cmps":{"soc":{"state_topic":"evil/x"}}}`)})
		if err == nil || resp == nil || resp.ReasonCode != reasonNotAuthorized {
			t.Errorf("QoS 1 publish on %s: response %+v, error %v; want reason code 0x87 (not authorized)", topic, resp, err)
		}
	}
	if _, ok := broker.server.Topics.Retained.Get(own); ok {
		t.Errorf("a client's config on %s was kept", own)
	}
	open := []string{"homeassistant/status", "homeassistant/device/zigbee_0x1/config",
		"homeassistant/device/fleet2mqtt_other_" + testVIN + "/config", "homeassistant/sensor/fleet2mqtt_" + testVIN + "/x/config"}
	for _, topic := range open {
		resp, err := faker.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("online")})
		if err != nil || resp.ReasonCode >= 0x80 {
			t.Errorf("publish on %s refused: %+v %v", topic, resp, err)
		}
	}
	// The bridge itself still writes its configs.
	if err := broker.Publish(t.Context(), []pubsub.Message{{Topic: own, Payload: []byte("{}"), QoS: 1, Retain: true}}); err != nil {
		t.Fatal(err)
	}
	if pk, ok := broker.server.Topics.Retained.Get(own); !ok || string(pk.Payload) != "{}" {
		t.Errorf("the bridge's own config on %s not kept", own)
	}
	// A client may remove it (Home Assistant does when its user deletes the
	// device; so does fleet2mqtt discovery remove).
	if resp, err := faker.Publish(t.Context(), &paho.Publish{Topic: own, QoS: 1, Retain: true}); err != nil || resp.ReasonCode >= 0x80 {
		t.Errorf("removing %s: %+v %v", own, resp, err)
	}
	if _, ok := broker.server.Topics.Retained.Get(own); ok {
		t.Errorf("%s still retained after a client removed it", own)
	}
}

// TestSysPublishAnswered: an MQTT 5 client's QoS 1 publish on a $SYS
// topic gets a PUBACK with a failure reason code instead of no answer.
func TestSysPublishAnswered(t *testing.T) {
	broker := startBroker(t, testConfig(), "")
	c := mustDial(t, broker.Addr(ListenerTCP), nil)
	for _, topic := range []string{"$SYS/x", "$sys/broker/uptime"} {
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("1")})
		cancel()
		if resp == nil || resp.ReasonCode != reasonNotAuthorized {
			t.Errorf("QoS 1 publish on %s: response %+v, error %v; want a PUBACK with 0x87 (not authorized)", topic, resp, err)
		}
	}
	// The connection goes on.
	if resp, err := c.Publish(t.Context(), &paho.Publish{Topic: "x/y", QoS: 1, Payload: []byte("1")}); err != nil || resp.ReasonCode != 0 {
		t.Errorf("publish after the refusal: %+v %v", resp, err)
	}
}

// TestClientRetainedQuota: the retained messages of clients are bounded
// in count and bytes; beyond, an MQTT 5 QoS 1 publish is refused with
// reason code 0x97, a QoS 0 one is delivered but not kept; removing a
// message and replacing one with a smaller one pass; the bridge's own
// topics do not count.
func TestClientRetainedQuota(t *testing.T) {
	cfg := testConfig()
	cfg.ClientRetainedMessages = 3
	cfg.ClientRetainedBytes = 1000
	broker := startBroker(t, cfg, "")
	addr := broker.Addr(ListenerTCP)
	c := mustDial(t, addr, nil)
	pub := func(topic string, size, qos int) byte {
		t.Helper()
		resp, err := c.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: byte(qos), Retain: true, Payload: bytes.Repeat([]byte("x"), size)})
		if qos == 0 {
			if err != nil {
				t.Fatal(err)
			}
			return 0
		}
		if resp == nil {
			t.Fatalf("publish %s: no PUBACK: %v", topic, err)
		}
		return resp.ReasonCode
	}
	kept := func(topic string) bool {
		_, ok := broker.server.Topics.Retained.Get(topic)
		return ok
	}
	for i := range 3 {
		if rc := pub(fmt.Sprint("junk/", i), 100, 1); rc != 0 {
			t.Fatalf("junk/%d: reason code %#x within the quota", i, rc)
		}
	}
	if rc := pub("junk/3", 10, 1); rc != reasonQuotaExceeded {
		t.Errorf("a 4th retained message: reason code %#x, want 0x97", rc)
	}
	if rc := pub("junk/0", 50, 1); rc != 0 {
		t.Errorf("replacing with a smaller message: reason code %#x", rc)
	}
	if rc := pub("junk/1", 900, 1); rc != reasonQuotaExceeded {
		t.Errorf("a message over the byte limit: reason code %#x, want 0x97", rc)
	}
	if rc := pub("junk/2", 0, 1); rc != 0 || kept("junk/2") {
		t.Errorf("removing a retained message: reason code %#x, kept %v", rc, kept("junk/2"))
	}
	if rc := pub("junk/4", 10, 1); rc != 0 {
		t.Errorf("after a removal: reason code %#x", rc)
	}
	// QoS 0 beyond the quota: delivered, not kept.
	sub := mustDial(t, addr, nil)
	sub.subscribe(t, "live/#")
	pub("live/1", 10, 0)
	if m := sub.next(t); m.Topic != "live/1" {
		t.Errorf("subscriber got %s", m.Topic)
	}
	if kept("live/1") {
		t.Error("a QoS 0 retained message beyond the quota was kept")
	}
	// The bridge's topics do not count.
	if err := broker.Publish(t.Context(), []pubsub.Message{{Topic: socTopic, Payload: []byte("80"), QoS: 1, Retain: true}}); err != nil || !kept(socTopic) {
		t.Errorf("the bridge's retained message: %v, kept %v", err, kept(socTopic))
	}
	if n := broker.RetainedRefused(); n != 3 {
		t.Errorf("RetainedRefused = %d, want 3", n)
	}
}

// TestStoreRemovesLeftovers: start-up removes the temporary files of
// interrupted saves, and only those.
func TestStoreRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	leftovers := []string{retainedFile + ".123456.tmp", clientsRetainedFile + ".9.tmp"}
	others := []string{retainedFile + ".corrupt", retainedFile + ".x.tmp", "notes.tmp", retainedFile + ".12.tmp.bak"}
	for _, name := range append(leftovers, others...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startBroker(t, testConfig(), dir)
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", name, err)
		}
	}
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s removed: %v", name, err)
		}
	}
}

// TestStoreSavesWhatChanged: a save rewrites only the file whose part
// changed, so that the cars' data does not rewrite what clients retained,
// and the other way round.
func TestStoreSavesWhatChanged(t *testing.T) {
	dir := t.TempDir()
	s := newStore(dir, func(topic string) bool { return strings.HasPrefix(topic, "tesla/") }, testLogger(t))
	retained := map[string]packets.Packet{
		"tesla/V/Soc": retainedPacket("tesla/V/Soc", "80"),
		"junk/1":      retainedPacket("junk/1", strings.Repeat("x", 1000)),
	}
	all := func() map[string]packets.Packet { return retained }
	s.changed()
	s.topicChanged("junk/1")
	if err := s.save(all); err != nil {
		t.Fatal(err)
	}
	stat := func(name string) os.FileInfo {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	ours, clients := stat(retainedFile), stat(clientsRetainedFile)
	retained["tesla/V/Soc"] = retainedPacket("tesla/V/Soc", "81")
	s.changed()
	if err := s.save(all); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(clients, stat(clientsRetainedFile)) {
		t.Error("a change of the bridge's topics rewrote the clients' file")
	}
	if os.SameFile(ours, stat(retainedFile)) {
		t.Error("a change of the bridge's topics did not rewrite its file")
	}
}

// TestPersistFailureVisible: a save that fails (the data directory gone,
// a file in its place: this fails for root too, unlike a read-only
// directory) is reported by Persistence and fails Close, so that the
// process can exit non-zero.
func TestPersistFailureVisible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mqtt")
	b, err := New(testConfig(), dir, testPrefix, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), []pubsub.Message{{Topic: socTopic, Payload: []byte("80"), QoS: 1, Retain: true}}); err != nil {
		t.Fatal(err)
	}
	if err := b.saveNow(); err == nil {
		t.Fatal("save into a file as directory succeeded")
	}
	if st := b.Persistence(); !st.Enabled || !st.Failing || st.Failures != 1 || st.LastError == "" {
		t.Errorf("Persistence = %+v, want failing", st)
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "final save") {
		t.Errorf("Close = %v, want the final save's error", err)
	}
}

// TestSaveLogBackOff: the first failure is logged at once, later ones at
// doubling intervals; success after failures is logged once.
func TestSaveLogBackOff(t *testing.T) {
	var h saveHealth
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := errors.New("disk full")
	var logged []time.Duration
	for s := 0; s <= 8*60; s += 10 { // a save every 10 s for 8 minutes
		if l, _ := h.saved(fail, t0.Add(time.Duration(s)*time.Second)); l {
			logged = append(logged, time.Duration(s)*time.Second)
		}
	}
	want := []time.Duration{0, time.Minute, 3 * time.Minute, 7 * time.Minute}
	if fmt.Sprint(logged) != fmt.Sprint(want) {
		t.Errorf("logged at %v, want %v", logged, want)
	}
	if _, recovered := h.saved(nil, t0.Add(time.Hour)); !recovered {
		t.Error("recovery not logged")
	}
	if st := h.status(); st.Failing || st.Failures != 49 {
		t.Errorf("status after recovery %+v", st)
	}
}
