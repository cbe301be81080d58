package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/teslamate"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

var derivedT0 = time.Date(2026, 3, 14, 8, 0, 0, 0, time.UTC)

// Home and Work are 10 km apart in Berlin.
func derivedConfig(t testing.TB) *activity.Config {
	t.Helper()
	p := 0.30
	cfg := activity.DefaultConfig()
	cfg.Places = []activity.Place{
		{Name: "Home", Latitude: 52.52, Longitude: 13.405, Radius: 150, PricePerKWh: &p},
		{Name: "Work", Latitude: 52.52, Longitude: 13.552},
	}
	cfg.Currency, cfg.TimeZone = "EUR", "UTC"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// sessions records what is appended to the history.
type sessions struct {
	list []activity.Session
	err  error
}

func (s *sessions) Append(x activity.Session) error {
	if s.err != nil {
		return s.err
	}
	s.list = append(s.list, x)
	return nil
}

// derivedRig is a bridge and its derived publisher on one recorder.
type derivedRig struct {
	t   *testing.T
	pub *recorder
	br  *Bridge
	d   *Derived
	h   *sessions
	now time.Time
}

func newDerivedRig(t *testing.T, stateDir string, tm bool) *derivedRig {
	t.Helper()
	r := &derivedRig{t: t, pub: &recorder{}, h: &sessions{}, now: derivedT0}
	var err error
	if r.br, err = New(DefaultConfig(), r.pub, nil); err != nil {
		t.Fatal(err)
	}
	opts := DerivedOptions{Activity: derivedConfig(t), History: r.h, StateDir: stateDir}
	if tm {
		opts.TeslaMate = teslamate.Config{Enabled: true, CarIDs: map[string]int{vin: 3}}
	}
	if r.d, err = NewDerived(r.br, opts); err != nil {
		t.Fatal(err)
	}
	return r
}

// send passes a record made d after the start through the bridge, which
// feeds it to the derived publisher.
func (r *derivedRig) send(d time.Duration, data ...telemetry.Datum) error {
	r.t.Helper()
	r.now = derivedT0.Add(d)
	rec := &telemetry.Record{VIN: vin, Topic: telemetry.TopicV, CreatedAt: r.now, ReceivedAt: r.now, Data: data}
	return r.br.Handle(context.Background(), rec)
}

func (r *derivedRig) must(d time.Duration, data ...telemetry.Datum) {
	r.t.Helper()
	if err := r.send(d, data...); err != nil {
		r.t.Fatal(err)
	}
}

func enumNamed(f telemetry.Field, name string) telemetry.Datum {
	info, _ := telemetry.Lookup(f)
	ev, ok := info.Enum.ByName(name)
	if !ok {
		panic(name)
	}
	return datum(f, telemetry.EnumOf(info.Enum, ev))
}

func gear(g string) telemetry.Datum { return enumNamed(telemetry.FieldGear, g) }

func chargeState(s string) telemetry.Datum { return enumNamed(telemetry.FieldDetailedChargeState, s) }

func at(lat, lon float64) telemetry.Datum {
	return datum(telemetry.FieldLocation, telemetry.LocationValue(lat, lon))
}

func num(f telemetry.Field, v float64) telemetry.Datum { return datum(f, telemetry.FloatValue(v)) }

// derived returns the messages on the derived topics, by topic (the last
// of each), and all of them in order.
func derivedMsgs(msgs []pubsub.Message) (map[string]string, []string) {
	last := map[string]string{}
	var order []string
	for _, m := range msgs {
		level := strings.TrimPrefix(m.Topic, "tesla/"+vin+"/")
		switch {
		case level == topic.StatusLevel, level == topic.StatusSinceLevel, level == topic.PlaceLevel,
			strings.HasSuffix(level, "/event"), strings.HasSuffix(level, "/last"),
			strings.HasPrefix(m.Topic, "teslamate/"):
			last[m.Topic] = string(m.Payload)
			order = append(order, line(m))
		}
	}
	return last, order
}

// drive plays a drive from Home to Work, a stop there, and a charge at
// Home on the way back that completes.
func (r *derivedRig) driveHomeToWork() {
	r.must(0, gear("P"), at(52.52, 13.405), num(telemetry.FieldOdometer, 1000), num(telemetry.FieldBatteryLevel, 80), num(telemetry.FieldEnergyRemaining, 60))
	r.must(time.Minute, gear("D"), num(telemetry.FieldVehicleSpeed, 20))
	r.must(5*time.Minute, at(52.52, 13.48), num(telemetry.FieldVehicleSpeed, 62), num(telemetry.FieldOdometer, 1003))
	r.must(12*time.Minute, at(52.52, 13.552), num(telemetry.FieldVehicleSpeed, 0), num(telemetry.FieldOdometer, 1006.2), num(telemetry.FieldBatteryLevel, 77), num(telemetry.FieldEnergyRemaining, 58))
	r.must(13*time.Minute, gear("P"))
	r.must(17*time.Minute, gear("P"), num(telemetry.FieldInsideTemp, 20)) // past drive_grace
}

func TestDerivedDriveAndCharge(t *testing.T) {
	r := newDerivedRig(t, t.TempDir(), true)
	r.driveHomeToWork()
	last, order := derivedMsgs(r.pub.take())
	want := map[string]string{
		"tesla/" + vin + "/status":       "parked",
		"tesla/" + vin + "/status/since": "2026-03-14T08:17:00Z",
		"tesla/" + vin + "/place":        "Work",
		"teslamate/cars/3/geofence":      "Work",
		"teslamate/cars/3/state":         "online",
		"teslamate/cars/3/odometer":      "1619.32",
	}
	for topic, w := range want {
		if last[topic] != w {
			t.Errorf("%s = %q, want %q", topic, last[topic], w)
		}
	}
	var events []string
	for _, l := range order {
		if strings.Contains(l, "/event ") {
			events = append(events, l)
		}
	}
	wantEvents := []string{
		`place/event qos=1 retain=false {"event_type":"enter","place":"Home","at":"2026-03-14T08:00:00Z"}`,
		`drive/event qos=1 retain=false {"event_type":"started","place":"Home","at":"2026-03-14T08:01:00Z"}`,
		`place/event qos=1 retain=false {"event_type":"leave","place":"Home","at":"2026-03-14T08:05:00Z"}`,
		`place/event qos=1 retain=false {"event_type":"enter","place":"Work","at":"2026-03-14T08:12:00Z"}`,
		`drive/event qos=1 retain=false {"event_type":"ended","kind":"drive"`,
	}
	ok := len(events) == len(wantEvents)
	for i := 0; ok && i < len(events); i++ {
		ok = strings.Contains(events[i], wantEvents[i])
	}
	if !ok {
		t.Errorf("events:\n%s", strings.Join(events, "\n"))
	}
	var s activity.Session
	if err := json.Unmarshal([]byte(last["tesla/"+vin+"/drive/last"]), &s); err != nil {
		t.Fatalf("drive/last: %v", err)
	}
	if s.StartPlace != "Home" || s.EndPlace != "Work" || s.DistanceKm == nil || *s.DistanceKm != 9.98 || s.End != derivedT0.Add(13*time.Minute) {
		t.Errorf("drive/last = %+v", s)
	}
	if len(r.h.list) != 1 || r.h.list[0].Kind != activity.KindDrive {
		t.Errorf("history: %+v", r.h.list)
	}

	// Back home, plug in, charge to the limit.
	r.must(8*time.Hour, gear("D"))
	r.must(8*time.Hour+10*time.Minute, gear("P"), at(52.52, 13.405), num(telemetry.FieldOdometer, 1012.4))
	r.must(8*time.Hour+20*time.Minute, chargeState("Charging"), num(telemetry.FieldACChargingEnergyIn, 0), num(telemetry.FieldDCChargingEnergyIn, 0), num(telemetry.FieldACChargingPower, 11))
	r.must(9*time.Hour, num(telemetry.FieldACChargingEnergyIn, 7), num(telemetry.FieldDCChargingEnergyIn, 6.5))
	r.must(10*time.Hour, num(telemetry.FieldACChargingEnergyIn, 20), num(telemetry.FieldDCChargingEnergyIn, 18.4), chargeState("Complete"), num(telemetry.FieldBatteryLevel, 90))
	last, _ = derivedMsgs(r.pub.take())
	if err := json.Unmarshal([]byte(last["tesla/"+vin+"/charge/last"]), &s); err != nil {
		t.Fatalf("charge/last %q: %v", last["tesla/"+vin+"/charge/last"], err)
	}
	if s.Kind != activity.KindCharge || s.StartPlace != "Home" || s.EnergyUsedKWh == nil || *s.EnergyUsedKWh != 20 || s.Cost == nil || *s.Cost != 6 || s.Currency != "EUR" {
		t.Errorf("charge/last = %s", last["tesla/"+vin+"/charge/last"])
	}
	if ev := last["tesla/"+vin+"/charge/event"]; !strings.HasPrefix(ev, `{"event_type":"ended","kind":"charge"`) {
		t.Errorf("charge/event = %s", ev)
	}
	if last["teslamate/cars/3/charge_energy_added"] != "18.4" {
		t.Errorf("teslamate charge_energy_added = %q", last["teslamate/cars/3/charge_energy_added"])
	}
	if len(r.h.list) != 3 { // drive, drive, charge
		t.Errorf("history holds %d sessions, want 3", len(r.h.list))
	}
}

// A publish that fails leaves the frame unacknowledged; the car sends it
// again, which the tracker has seen: what it changed must still go out.
func TestDerivedPublishFailureStaysPending(t *testing.T) {
	r := newDerivedRig(t, "", false)
	r.must(0, gear("P"), at(52.52, 13.405))
	r.pub.take()
	r.pub.err = errors.New("broker away")
	if err := r.send(time.Minute, gear("D")); err == nil {
		t.Fatal("publish failed, Handle returned nil")
	}
	r.pub.err = nil
	r.must(time.Minute, gear("D")) // the resend
	last, _ := derivedMsgs(r.pub.take())
	if last["tesla/"+vin+"/status"] != "driving" || !strings.Contains(last["tesla/"+vin+"/drive/event"], "started") {
		t.Errorf("after the resend: %v", last)
	}
}

// A history that cannot be written does not hold the car's data back: the
// record that ends a session is published, and the session waits in
// memory until a Tick appends it.
func TestDerivedHistoryFailure(t *testing.T) {
	r := newDerivedRig(t, "", false)
	r.must(0, gear("D"), num(telemetry.FieldOdometer, 1))
	r.must(time.Minute, gear("P"))
	r.h.err = errors.New("disk full")
	r.pub.take()
	r.must(5*time.Minute, gear("P"), num(telemetry.FieldOdometer, 2)) // the drive ends here
	last, _ := derivedMsgs(r.pub.take())
	if last["tesla/"+vin+"/status"] != "parked" || last["tesla/"+vin+"/drive/last"] == "" {
		t.Errorf("with the history failing, the record that ended the drive published %v", last)
	}
	if n := r.d.Unfiled(); n != 1 || len(r.h.list) != 0 {
		t.Fatalf("%d sessions wait, the history holds %d; want 1 and 0", n, len(r.h.list))
	}
	if err := r.d.Tick(context.Background(), derivedT0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := r.d.Unfiled(); n != 1 {
		t.Fatalf("%d sessions wait after a tick that failed too, want 1", n)
	}
	r.h.err = nil
	if err := r.d.Tick(context.Background(), derivedT0.Add(7*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := r.d.Unfiled(); n != 0 || len(r.h.list) != 1 || r.h.list[0].Kind != activity.KindDrive {
		t.Errorf("after the history recovered: %d sessions wait, history %+v", n, r.h.list)
	}
}

// A drive that spans a restart of fleet2mqtt is one drive: the tracker
// comes back from the state directory, with its status.
func TestDerivedRestart(t *testing.T) {
	dir := t.TempDir()
	r := newDerivedRig(t, dir, true)
	r.must(0, gear("P"), at(52.52, 13.405), num(telemetry.FieldOdometer, 1000))
	r.must(time.Minute, gear("D"), num(telemetry.FieldVehicleSpeed, 30))
	r.must(2*time.Minute, num(telemetry.FieldOdometer, 1001), num(telemetry.FieldVehicleSpeed, 40))
	// Killed here: no Save. The drive's start was saved when it started.

	r2 := newDerivedRig(t, dir, true)
	r2.d.Tracker(vin, func(tr *activity.Tracker) {
		if st, _ := tr.Status(); st != activity.StatusDriving || !tr.Driving() {
			t.Errorf("restored status %v driving %v", st, tr.Driving())
		}
	})
	if err := r2.d.Republish(context.Background()); err != nil {
		t.Fatal(err)
	}
	last, _ := derivedMsgs(r2.pub.take())
	if last["tesla/"+vin+"/status"] != "driving" || last["teslamate/cars/3/state"] != "driving" {
		t.Errorf("republished after restart: %v", last)
	}
	r2.must(10*time.Minute, at(52.52, 13.552), num(telemetry.FieldOdometer, 1006.2), gear("P"))
	r2.must(15*time.Minute, num(telemetry.FieldInsideTemp, 20))
	if len(r2.h.list) != 1 {
		t.Fatalf("history: %d sessions, want 1", len(r2.h.list))
	}
	s := r2.h.list[0]
	if s.Start != derivedT0.Add(time.Minute) || s.StartPlace != "Home" || s.EndPlace != "Work" || s.DistanceKm == nil || *s.DistanceKm != 9.98 {
		t.Errorf("drive across the restart: %+v", s)
	}
}

// Tick ends a drive whose grace period passed without any record.
func TestDerivedTick(t *testing.T) {
	r := newDerivedRig(t, t.TempDir(), false)
	r.must(0, gear("D"), num(telemetry.FieldOdometer, 1))
	r.must(time.Minute, gear("P"), num(telemetry.FieldOdometer, 2))
	r.pub.take()
	if err := r.d.Tick(context.Background(), derivedT0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	last, _ := derivedMsgs(r.pub.take())
	if last["tesla/"+vin+"/status"] != "parked" || last["tesla/"+vin+"/drive/last"] == "" {
		t.Errorf("after the tick: %v", last)
	}
}

// Tick saves a car whose values alone changed at most once a minute; a
// change of status is saved with the record that made it.
func TestDerivedTickSavesValuesOncePerInterval(t *testing.T) {
	dir := t.TempDir()
	r := newDerivedRig(t, dir, false)
	saved := func() string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, vin+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tick := func(d time.Duration) {
		t.Helper()
		if err := r.d.Tick(context.Background(), derivedT0.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	r.must(0, gear("P"), num(telemetry.FieldOdometer, 1000))
	r.must(5*time.Second, num(telemetry.FieldOdometer, 1001))
	tick(10 * time.Second)
	first := saved()
	if !strings.Contains(first, "1001") {
		t.Fatalf("values not saved by the first tick after they changed: %s", first)
	}
	r.must(15*time.Second, num(telemetry.FieldOdometer, 1002))
	tick(20 * time.Second)
	tick(60 * time.Second)
	if saved() != first {
		t.Errorf("values saved again within a minute of the last tick's save:\n%s\n%s", first, saved())
	}
	tick(70 * time.Second)
	if !strings.Contains(saved(), "1002") {
		t.Errorf("values not saved a minute after the last save: %s", saved())
	}
	before := saved()
	r.must(75*time.Second, gear("D"))
	if saved() == before {
		t.Error("a change of status was not saved with its record")
	}
	// A clock set back saves at once.
	r.must(76*time.Second, num(telemetry.FieldOdometer, 1003))
	tick(-time.Hour)
	if !strings.Contains(saved(), "1003") {
		t.Errorf("values not saved after the clock was set back: %s", saved())
	}
}

// cpuTime is the CPU time the process used, user and system: on a busy
// machine it varies far less than the wall-clock time per operation.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDerived measures the derived state's share of a record's cost:
// the bridge alone, then the bridge and Derived, on a driving car whose
// values change with every record (BenchmarkHandleChanging's stream, one
// second apart).
func BenchmarkDerived(b *testing.B) {
	for _, c := range []struct {
		name      string
		derived   bool
		teslamate bool
	}{{"bridge", false, false}, {"bridge+derived", true, false}, {"bridge+derived+teslamate", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			br, err := New(DefaultConfig(), discard{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if c.derived {
				opts := DerivedOptions{Activity: derivedConfig(b)}
				opts.TeslaMate.Enabled = c.teslamate
				if _, err = NewDerived(br, opts); err != nil {
					b.Fatal(err)
				}
			}
			rec := benchRecord()
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
			n := 0
			for b.Loop() {
				n++
				rec.CreatedAt = derivedT0.Add(time.Duration(n) * time.Second)
				for i := range rec.Data {
					dt := &rec.Data[i]
					switch dt.Value.Kind() {
					case telemetry.KindFloatValue:
						dt.Value = telemetry.FloatValue(float64(n%1000)/7 + float64(i))
					case telemetry.KindIntValue:
						dt.Value = telemetry.IntValue(int64(n + i))
					case telemetry.KindBoolValue:
						dt.Value = telemetry.BoolValue(n%2 == 0)
					case telemetry.KindLocationValue:
						dt.Value = telemetry.LocationValue(37+float64(n%1000)/1e4, -122.1)
					}
				}
				if err := br.Handle(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Values alone update the TeslaMate layout at most once a second (of the
// car's clock); what changed in between follows with the next record
// after that, or the next tick.
func TestDerivedTeslaMateInterval(t *testing.T) {
	r := newDerivedRig(t, "", true)
	r.must(0, gear("P"), num(telemetry.FieldOdometer, 1000))
	r.pub.take()
	r.must(300*time.Millisecond, num(telemetry.FieldOdometer, 1001))
	if last, _ := derivedMsgs(r.pub.take()); last["teslamate/cars/3/odometer"] != "" {
		t.Errorf("odometer published within the interval: %v", last)
	}
	r.must(600*time.Millisecond, num(telemetry.FieldInsideTemp, 20))
	if err := r.d.Tick(context.Background(), derivedT0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last, _ := derivedMsgs(r.pub.take())
	if last["teslamate/cars/3/odometer"] != "1610.95" || last["teslamate/cars/3/inside_temp"] != "20" {
		t.Errorf("after the tick: %v", last)
	}
	r.must(1700*time.Millisecond, num(telemetry.FieldOdometer, 1002))
	if last, _ := derivedMsgs(r.pub.take()); last["teslamate/cars/3/odometer"] != "1612.56" {
		t.Errorf("after the interval: %v", last)
	}
	// A change of status goes out at once.
	r.must(1800*time.Millisecond, gear("D"))
	if last, _ := derivedMsgs(r.pub.take()); last["teslamate/cars/3/state"] != "driving" || last["teslamate/cars/3/shift_state"] != "D" {
		t.Errorf("status change: %v", last)
	}
}

// The state object after a restart holds the values sent before it.
func TestValuesAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "values.json")
	cfg := DefaultConfig()
	cfg.StateInterval = 0
	pub := &recorder{}
	br, err := New(cfg, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	handle(t, br, dataRecord(num(telemetry.FieldSoc, 80), datum(telemetry.FieldVehicleName, telemetry.StringValue("Ellie")), gear("P")))
	if err := br.SaveValues(path); err != nil {
		t.Fatal(err)
	}
	br2, err := New(cfg, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := br2.RestoreValues(path); err != nil {
		t.Fatal(err)
	}
	pub.take()
	handle(t, br2, dataRecord(num(telemetry.FieldSoc, 79)))
	var state string
	for _, m := range pub.take() {
		if m.Topic == "tesla/"+vin+"/state" {
			state = string(m.Payload)
		}
	}
	if !strings.Contains(state, `"Soc":79`) || !strings.Contains(state, `"VehicleName":"Ellie"`) || !strings.Contains(state, `"Gear":"P"`) {
		t.Errorf("state object after the restart: %s", state)
	}
	if err := br2.RestoreValues(filepath.Join(t.TempDir(), "none.json")); err != nil {
		t.Errorf("a missing file: %v", err)
	}
}

// A place added while the car is there (the setup page's "add the car's
// position as a place") is entered at once.
func TestDerivedSetPlaces(t *testing.T) {
	r := newDerivedRig(t, "", false)
	r.must(0, gear("P"), at(48.1, 11.5))
	r.pub.take()
	places := append(slices.Clone(r.d.opts.Activity.Places), activity.Place{Name: "Parents", Latitude: 48.1, Longitude: 11.5})
	if err := r.d.SetPlaces(context.Background(), places); err != nil {
		t.Fatal(err)
	}
	last, _ := derivedMsgs(r.pub.take())
	if last["tesla/"+vin+"/place"] != "Parents" || !strings.Contains(last["tesla/"+vin+"/place/event"], `"enter","place":"Parents"`) {
		t.Errorf("after adding the place: %v", last)
	}
	if err := r.d.SetPlaces(context.Background(), places[:2]); err != nil {
		t.Fatal(err)
	}
	last, _ = derivedMsgs(r.pub.take())
	if p, ok := last["tesla/"+vin+"/place"]; !ok || p != "" || !strings.Contains(last["tesla/"+vin+"/place/event"], `"leave","place":"Parents"`) {
		t.Errorf("after removing it: %v", last)
	}
	if err := r.d.SetPlaces(context.Background(), []activity.Place{{Name: "X"}}); err == nil {
		t.Error("a place without coordinates was taken")
	}
}

// TestDerivedSaveFailing: a car whose derived state cannot be saved (here
// its file is a directory, which stops root too) is counted by
// SaveFailing until a later tick saves it.
func TestDerivedSaveFailing(t *testing.T) {
	dir := t.TempDir()
	r := newDerivedRig(t, dir, false)
	file := filepath.Join(dir, vin+".json")
	r.must(0, gear("P"), num(telemetry.FieldOdometer, 1000))
	if err := r.d.Tick(context.Background(), derivedT0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := r.d.SaveFailing(); n != 0 {
		t.Fatalf("%d cars failing after a save that worked", n)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(file, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.must(15*time.Second, num(telemetry.FieldOdometer, 1001))
	err := r.d.Tick(context.Background(), derivedT0.Add(80*time.Second))
	if err == nil || !strings.Contains(err.Error(), "save the derived state of "+vin) {
		t.Fatalf("tick with the file in the way: %v, want the failed save", err)
	}
	if n := r.d.SaveFailing(); n != 1 {
		t.Fatalf("%d cars failing, want 1", n)
	}
	if err := os.RemoveAll(file); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Tick(context.Background(), derivedT0.Add(90*time.Second)); err != nil {
		t.Fatalf("the next tick: %v, want the save to work again", err)
	}
	if n := r.d.SaveFailing(); n != 0 {
		t.Errorf("%d cars failing after the save worked again", n)
	}
	if data, err := os.ReadFile(file); err != nil || !strings.Contains(string(data), "1001") {
		t.Errorf("saved %s (%v), want the values of 1001", data, err)
	}
}
