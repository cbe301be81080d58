package external

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/internal/testenv"
)

// benchBrokers are the mosquitto configurations benchmarked: as installed
// (Receive Maximum 20, Nagle on) and tuned for a bridge (a deeper QoS 1
// window, PUBACKs sent at once).
var benchBrokers = []struct {
	name   string
	config []string
}{
	{"mosquitto-default", nil},
	{"mosquitto-tuned", []string{"max_inflight_messages 1000", "set_tcp_nodelay true"}},
}

// benchBatch is a record's worth of messages: 20 fields of one vehicle.
func benchBatch(qos byte) []pubsub.Message {
	fields := []string{"BatteryLevel", "Soc", "Gear", "VehicleSpeed", "Odometer", "EstBatteryRange",
		"ChargeState", "InsideTemp", "OutsideTemp", "Location", "GpsHeading", "DCChargingPower",
		"ACChargingPower", "ChargeLimitSoc", "Locked", "SentryMode", "TpmsPressureFl", "TpmsPressureFr",
		"TpmsPressureRl", "TpmsPressureRr"}
	values := []string{"80.5", "79", "D", "65", "12345.6", "250.1", "Charging", "21.5", "12", `{"latitude":52.52,"longitude":13.405}`,
		"270", "0", "11", "90", "true", "false", "2.9", "2.9", "2.8", "2.8"}
	msgs := make([]pubsub.Message, len(fields))
	for i := range fields {
		msgs[i] = pubsub.Message{Topic: "tesla/5YJ3E7EB2NF000001/" + fields[i], Payload: []byte(values[i]), QoS: qos, Retain: true}
	}
	return msgs
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// runBatches calls publish b.N times from callers goroutines and reports
// msgs/s and the process's CPU seconds (user + system, and user alone) per
// 100k batches.
func runBatches(b *testing.B, callers, batchSize int, publish func(ctx context.Context) error) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	next := make(chan struct{}, callers)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	user0, sys0 := cpuTime()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := publish(ctx); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	user1, sys1 := cpuTime()
	b.StopTimer()
	per100k := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) * 100_000 }
	b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(per100k(user1-user0+sys1-sys0), "cpu-s/100k")
	b.ReportMetric(per100k(user1-user0), "user-s/100k")
}

// BenchmarkPublish publishes 20-message batches through Client against a
// real mosquitto, from 1 caller and from 16 concurrent callers (vehicles).
// cpu-s/100k is this process's CPU time (user + system, from getrusage)
// per 100,000 batches; the broker's is not included.
func BenchmarkPublish(b *testing.B) {
	for _, bb := range benchBrokers {
		broker := testenv.Mosquitto(b, testenv.WithConfig(bb.config...))
		for _, qos := range []byte{0, 1} {
			for _, callers := range []int{1, 16, 200} {
				b.Run(fmt.Sprintf("%s/qos%d/callers=%d", bb.name, qos, callers), func(b *testing.B) {
					c, cancel := benchClient(b, broker.URL())
					defer cancel()
					msgs := benchBatch(qos)
					runBatches(b, callers, len(msgs), func(ctx context.Context) error { return c.Publish(ctx, msgs) })
				})
			}
		}
		broker.Stop()
	}
}

func benchClient(b *testing.B, brokerURL string) (*Client, func()) {
	c, err := New(Config{URL: brokerURL, ClientID: "bench-" + b.Name()}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	actx, acancel := context.WithTimeout(context.Background(), waitTimeout)
	defer acancel()
	if err := c.AwaitConnection(actx); err != nil {
		b.Fatal(err)
	}
	return c, func() { cancel(); <-c.Done() }
}

// BenchmarkPublishPaho is the baseline: plain autopaho with its own
// connection and session, one ConnectionManager.Publish per message (QoS 0
// in sequence; QoS 1 with a goroutine per message so that the batch is not
// 20 round trips).
func BenchmarkPublishPaho(b *testing.B) {
	broker := testenv.Mosquitto(b)
	u, _ := url.Parse(broker.URL())
	for _, qos := range []byte{0, 1} {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("qos%d/callers=%d", qos, callers), func(b *testing.B) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
					ServerUrls: []*url.URL{u}, KeepAlive: 30,
					ClientConfig: paho.ClientConfig{ClientID: "paho-" + b.Name()},
				})
				if err != nil {
					b.Fatal(err)
				}
				if err := cm.AwaitConnection(ctx); err != nil {
					b.Fatal(err)
				}
				msgs := benchBatch(qos)
				runBatches(b, callers, len(msgs), func(ctx context.Context) error {
					if qos == 0 {
						for _, m := range msgs {
							if _, err := cm.Publish(ctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, Retain: m.Retain}); err != nil {
								return err
							}
						}
						return nil
					}
					var wg sync.WaitGroup
					errs := make(chan error, len(msgs))
					for _, m := range msgs {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if _, err := cm.Publish(ctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: m.Retain}); err != nil {
								errs <- err
							}
						}()
					}
					wg.Wait()
					close(errs)
					return <-errs
				})
				cancel()
				<-cm.Done()
			})
		}
	}
}
