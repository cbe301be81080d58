package embedded

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// subscriberEnv makes the test binary a benchmark subscriber: an MQTT
// client in its own process, so that the benchmark's CPU time is the
// bridge's and the broker's alone.
const subscriberEnv = "FLEET2MQTT_BENCH_SUBSCRIBER"

func TestMain(m *testing.M) {
	if addr := os.Getenv(subscriberEnv); addr != "" {
		qos, _ := strconv.Atoi(os.Getenv(subscriberEnv + "_QOS"))
		os.Exit(runSubscriber(addr, byte(qos)))
	}
	os.Exit(m.Run())
}

// runSubscriber counts the messages under tesla/#, subscribed with qos. It announces
// itself on bench/ready; for each message on bench/marker it answers on
// bench/ack with its count, so that the benchmark knows when everything
// before the marker has been delivered.
func runSubscriber(addr string, qos byte) int {
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var count atomic.Int64
	var c *paho.Client
	markers := make(chan struct{}, 16)
	c = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Topic == "bench/marker" {
				markers <- struct{}{}
			} else {
				count.Add(1)
			}
			return true, nil
		}},
		OnClientError: func(error) { os.Exit(0) }, // the broker went away: done
	})
	ctx := context.Background()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "bench-subscriber", KeepAlive: 60, CleanStart: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "tesla/#", QoS: qos}, {Topic: "bench/marker", QoS: 1},
	}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "bench/ready", QoS: 1}); err != nil {
		return 1
	}
	for range markers {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "bench/ack", QoS: 1, Payload: strconv.AppendInt(nil, count.Load(), 10)}); err != nil {
			return 0
		}
	}
	return 0
}

// startSubscriber runs the subscriber process against b and waits until
// it has subscribed.
func startSubscriber(tb testing.TB, b *Broker, qos byte) (acks chan int64) {
	tb.Helper()
	ready := make(chan struct{}, 1)
	acks = make(chan int64, 16)
	b.Subscribe(tb.Context(), "bench/ready", func(string, []byte) { ready <- struct{}{} })
	b.Subscribe(tb.Context(), "bench/ack", func(_ string, p []byte) {
		n, _ := strconv.ParseInt(string(p), 10, 64)
		acks <- n
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), subscriberEnv+"="+b.Addr(ListenerTCP), fmt.Sprint(subscriberEnv, "_QOS=", qos))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	select {
	case <-ready:
	case <-time.After(wait):
		tb.Fatal("subscriber did not start")
	}
	return acks
}

// counter counts the messages the broker accepted.
type counter struct {
	next pubsub.Publisher
	n    atomic.Int64
}

func (c *counter) Publish(ctx context.Context, msgs []pubsub.Message) error {
	err := c.next.Publish(ctx, msgs)
	if err == nil {
		c.n.Add(int64(len(msgs)))
	}
	return err
}

// fillRecord makes rec the n-th 20-field data record of vehicle vin; its
// numbers change with n, as a driving car's do. It reuses rec's memory, as
// the ingest server does.
func fillRecord(rec *telemetry.Record, vin string, n int) {
	f := float64(n % 1000)
	rec.VIN, rec.Topic = vin, telemetry.TopicV
	rec.Data = append(rec.Data[:0], []telemetry.Datum{
		{Field: telemetry.FieldVehicleSpeed, Value: telemetry.Float32Value(float32(f / 10))},
		{Field: telemetry.FieldOdometer, Value: telemetry.FloatValue(12345.678 + f/100)},
		{Field: telemetry.FieldSoc, Value: telemetry.FloatValue(79.125 - f/1000)},
		{Field: telemetry.FieldBatteryLevel, Value: telemetry.FloatValue(78.5)},
		{Field: telemetry.FieldEstBatteryRange, Value: telemetry.FloatValue(251.37 - f/100)},
		{Field: telemetry.FieldChargeLimitSoc, Value: telemetry.IntValue(80)},
		{Field: telemetry.FieldChargeAmps, Value: telemetry.IntValue(int64(n % 32))},
		{Field: telemetry.FieldMilesSinceReset, Value: telemetry.IntValue(9876543210)},
		{Field: telemetry.FieldInsideTemp, Value: telemetry.Float32Value(21.5)},
		{Field: telemetry.FieldOutsideTemp, Value: telemetry.Float32Value(-3.25)},
		{Field: telemetry.FieldPackVoltage, Value: telemetry.FloatValue(398.25 + f/1000)},
		{Field: telemetry.FieldPackCurrent, Value: telemetry.FloatValue(-12.5 + f/100)},
		{Field: telemetry.FieldLocked, Value: telemetry.BoolValue(true)},
		{Field: telemetry.FieldSentryMode, Value: telemetry.BoolValue(false)},
		{Field: telemetry.FieldGear, Value: telemetry.EnumNumber(telemetry.EnumShiftState, 5)},
		{Field: telemetry.FieldDetailedChargeState, Value: telemetry.EnumNumber(telemetry.EnumDetailedChargeStateValue, 4)},
		{Field: telemetry.FieldLocation, Value: telemetry.LocationValue(37.412374+f/1e5, -122.145867)},
		{Field: telemetry.FieldGpsHeading, Value: telemetry.FloatValue(271.5)},
		{Field: telemetry.FieldVehicleName, Value: telemetry.StringValue("Golden Test Car")},
		{Field: telemetry.FieldHvacPower, Value: telemetry.EnumNumber(telemetry.EnumHvacPowerState, 2)},
	}...)
}

// cpuTime returns the CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEmbedded measures 20-field records from 100 vehicles published
// through the bridge into the embedded broker (QoS 1, retained, state
// topic, retained messages persisted): with no subscriber, and with one
// subscriber in another process that receives every message, subscribed
// at QoS 1 or at QoS 0 (Home Assistant's default for its entities). The
// bridge runs with its default configuration (a state object per vehicle
// at most every second, see bridge.Config.StateInterval); the
// "every-state" runs publish the state object with every record, as
// state_interval 0 does. It reports the CPU time of this process (bridge
// and broker, including the writes to the subscriber) per 100,000 records
// and the messages published per record.
func BenchmarkEmbedded(b *testing.B) {
	for _, sc := range []struct {
		name       string
		qos        int  // of the subscriber; -1 for none
		everyState bool // state_interval 0
	}{
		{"no-subscriber", -1, false},
		{"subscriber-qos1", 1, false},
		{"subscriber-qos0", 0, false},
		{"no-subscriber-every-state", -1, true},
		{"subscriber-qos1-every-state", 1, true},
		{"subscriber-qos0-every-state", 0, true},
	} {
		withSubscriber := sc.qos >= 0
		b.Run(sc.name, func(b *testing.B) {
			cfg := testConfig()
			broker := startBroker(b, cfg, "")
			var acks chan int64
			if withSubscriber {
				acks = startSubscriber(b, broker, byte(sc.qos))
			}
			pub := &counter{next: broker}
			bcfg := bridge.DefaultConfig()
			if sc.everyState {
				bcfg.StateInterval = 0
			}
			br, err := bridge.New(bcfg, pub, nil)
			if err != nil {
				b.Fatal(err)
			}
			vins := make([]string, 100)
			for i := range vins {
				vins[i] = fmt.Sprintf("VIN%014d", i)
			}
			ctx := context.Background()
			workers := runtime.GOMAXPROCS(0)
			b.ReportAllocs()
			b.ResetTimer()
			start := cpuTime(b)
			// catchUp waits until the subscriber has everything published so
			// far: the benchmark keeps its backlog small, as cars do by
			// waiting for their acknowledgements, so that the broker never
			// has to drop messages for it.
			// (Deferred state objects may be published meanwhile: the
			// subscriber must have at least what was accepted before the
			// marker.)
			catchUp := func() {
				accepted := pub.n.Load()
				if err := broker.Publish(ctx, []pubsub.Message{{Topic: "bench/marker", QoS: 1}}); err != nil {
					b.Fatal(err)
				}
				select {
				case got := <-acks:
					if lost := accepted - got; lost > 0 {
						b.Fatalf("subscriber lost %d messages", lost)
					}
				case <-time.After(time.Minute):
					b.Fatal("subscriber did not answer")
				}
			}
			const batch = 250 // records between syncs
			for done := 0; done < b.N; {
				n := min(batch, b.N-done)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						rec := new(telemetry.Record)
						for i := w; i < n; i += workers {
							k := done + i
							fillRecord(rec, vins[k%len(vins)], k)
							if err := br.Handle(ctx, rec); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				done += n
				if withSubscriber {
					catchUp()
				}
			}
			used := cpuTime(b) - start
			b.StopTimer()
			b.ReportMetric(used.Seconds()/float64(b.N)*1e5, "cpu-s/100k-records")
			b.ReportMetric(float64(pub.n.Load())/float64(b.N), "msgs/record")
		})
	}
}
