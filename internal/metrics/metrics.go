// Package metrics is fleet2mqtt's Prometheus registry and what it
// exports: the records on their way to the bridge (a stage of the record
// path), what the broker accepts and how fast (a metered publisher), and
// the counters of the vehicle listener, the bridge and the broker, read
// at scrape time. The metrics are gathered at the seams between the parts
// so that the parts themselves stay free of instrumentation.
package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleet2mqtt/fleet2mqtt/bridge"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// Registry holds fleet2mqtt's Prometheus metrics; Handler serves them.
type Registry struct {
	reg       *prometheus.Registry
	records   *prometheus.CounterVec // by topic and outcome
	messages  prometheus.Counter
	publish   prometheus.Histogram
	pubErrors prometheus.Counter
	// car is the value of the car label of per-car metrics for a VIN
	// (http.metrics_vins).
	car func(vin string) string
}

// New makes the registry with the record, publish, Go and process
// metrics. vins (http.metrics_vins) labels per-car metrics with the VIN
// instead of its pseudonym (CarPseudonym).
func New(vins bool) *Registry {
	m := &Registry{
		reg: prometheus.NewRegistry(),
		car: CarPseudonym,
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "records_total",
			Help: "Vehicle records handed to the bridge, by topic and outcome (published, failed).",
		}, []string{"topic", "outcome"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_messages_total",
			Help: "MQTT messages the broker accepted.",
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_publish_seconds",
			Help:    "Time from handing a record's messages to the broker until it accepted all of them.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}),
		pubErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_publish_errors_total",
			Help: "Publish calls the broker did not accept (the car resends those records).",
		}),
	}
	m.reg.MustRegister(m.records, m.messages, m.publish, m.pubErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if vins {
		m.car = func(vin string) string { return vin }
	}
	return m
}

// CarPseudonym names a car on /metrics without its VIN: the first 8
// hexadecimal digits of the VIN's SHA-256 (printf %s VIN | sha256sum).
func CarPseudonym(vin string) string {
	sum := sha256.Sum256([]byte(vin))
	return hex.EncodeToString(sum[:4])
}

// Car is the value of the car label of per-car metrics for a VIN.
func (m *Registry) Car(vin string) string { return m.car(vin) }

// MustRegister adds collectors of other parts (the command service, the
// streaming cost meter); it panics on a name registered twice.
func (m *Registry) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves the metrics in Prometheus's text format.
func (m *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// WatchVehicles exports the vehicle listener's counters.
func (m *Registry) WatchVehicles(s *ingest.Server) {
	gauge := func(name, help string, v func(ingest.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fleet2mqtt", Name: name, Help: help},
			func() float64 { return float64(v(s.Stats())) })
	}
	counter := func(name, help string, v func(ingest.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "fleet2mqtt", Name: name, Help: help},
			func() float64 { return float64(v(s.Stats())) })
	}
	m.reg.MustRegister(
		gauge("vehicles_connected", "Vehicles connected now.", func(s ingest.Stats) int64 { return s.Connected }),
		counter("vehicle_connections_total", "Vehicle connections accepted.", func(s ingest.Stats) int64 { return s.Connections }),
		counter("vehicle_refused_total", "Vehicle connections refused (no or unknown client certificate).", func(s ingest.Stats) int64 { return s.Refused }),
		counter("vehicle_frames_total", "Binary frames read from vehicles.", func(s ingest.Stats) int64 { return s.Frames }),
		counter("vehicle_acks_total", "Frames acknowledged to vehicles.", func(s ingest.Stats) int64 { return s.Acks }),
		counter("vehicle_error_responses_total", "Frames answered with the protocol's error response (malformed, oversize).", func(s ingest.Stats) int64 { return s.ErrorResponses }),
		counter("vehicle_unacknowledged_total", "Frames left unacknowledged because they could not be published.", func(s ingest.Stats) int64 { return s.Unacknowledged }),
		counter("vehicle_oversized_frames_total", "Frames over the protocol's 1,000,000-byte limit (answered with the error response; those declaring over 4 MB also close the connection).", func(s ingest.Stats) int64 { return s.Oversized }),
		counter("vehicle_control_floods_total", "Vehicle connections dropped for sending control frames (ping, pong, close) too fast.", func(s ingest.Stats) int64 { return s.Floods }),
		counter("vehicle_items_refused_total", "Data items, alerts and errors left out of records on purpose (field numbers no firmware has, or too many in one record); the records are acknowledged.", func(s ingest.Stats) int64 { return s.DataRefused }),
	)
}

// WatchBridge exports what the bridge left out past a car's limits.
func (m *Registry) WatchBridge(b *bridge.Bridge) {
	counter := func(name, help string, v func(bridge.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "fleet2mqtt", Name: name, Help: help},
			func() float64 { return float64(v(b.Stats())) })
	}
	m.reg.MustRegister(
		counter("bridge_fields_refused_total", "Data items left out because their car already has 1,024 distinct fields (each would be a new retained topic); the records are acknowledged.", func(s bridge.Stats) int64 { return s.FieldsRefused }),
		counter("bridge_names_refused_total", "Alerts and errors left out because their car already has 256 distinct alert and error names; the records are acknowledged.", func(s bridge.Stats) int64 { return s.NamesRefused }),
	)
}

// WatchBroker exports what the broker client does that can be watched:
// the external client's queue (capacity is mqtt.external.queue_size), the
// embedded broker's drops, waits and retained messages kept on disk. It
// exports nothing for a broker that has none of those.
func (m *Registry) WatchBroker(b any, capacity int) {
	if q, ok := b.(queue); ok {
		m.watchQueue(q, capacity)
	}
	if p, ok := b.(persister); ok {
		m.watchStore(p)
	}
	if eb, ok := b.(*embedded.Broker); ok {
		m.watchEmbedded(eb)
	}
}

// watchEmbedded exports what the embedded broker drops, by reason, and
// how often publishing waited for a subscriber that reads slowly.
func (m *Registry) watchEmbedded(b *embedded.Broker) {
	dropped := make([]prometheus.Collector, 0, len(embedded.DropReasons)+1)
	for _, r := range embedded.DropReasons {
		dropped = append(dropped, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_dropped_messages_total",
			Help:        "Messages the embedded broker gave up for a subscriber, by reason (stuck_subscriber: disconnected after reading nothing for stall_timeout; session_full: an offline session holds max_queued; offline_full: offline sessions hold max_offline_queued in all; packet_too_large; queue_full: another client's message).",
			ConstLabels: prometheus.Labels{"reason": string(r)},
		}, func() float64 { return float64(b.Dropped(r)) }))
	}
	dropped = append(dropped, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "fleet2mqtt", Name: "mqtt_publish_waits_total",
		Help: "Times publishing waited for an embedded broker subscriber whose backlog was full (max_queued, max_queued_bytes): back-pressure, which slows acknowledgements to the cars.",
	}, func() float64 { return float64(b.Waits()) }))
	dropped = append(dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "fleet2mqtt", Name: "mqtt_offline_queued_messages",
		Help: "QoS 1 and 2 messages the embedded broker keeps for persistent sessions whose clients are offline (at most max_offline_queued in all).",
	}, func() float64 { return float64(b.OfflineQueued()) }))
	m.reg.MustRegister(dropped...)
}

// queue is a broker client that holds messages while it waits for the
// broker: the external client.
type queue interface {
	QueueLen() int
}

// watchQueue exports how many messages wait for the broker, and how many
// may.
func (m *Registry) watchQueue(q queue, capacity int) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_queue_depth",
			Help: "Messages waiting for the external broker now (for the connection or its acknowledgement).",
		}, func() float64 { return float64(q.QueueLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_queue_capacity",
			Help: "Messages that may wait for the external broker at once (mqtt.external.queue_size); beyond it frames stay unacknowledged.",
		}, func() float64 { return float64(capacity) }),
	)
}

// Count counts records on their way from the vehicle listener to the
// bridge, by topic and outcome (fleet2mqtt_records_total): a stage of the
// record path.
func (m *Registry) Count(next ingest.Sink) ingest.Sink {
	published := map[telemetry.Topic]prometheus.Counter{}
	failed := map[telemetry.Topic]prometheus.Counter{}
	for _, t := range []telemetry.Topic{telemetry.TopicV, telemetry.TopicAlerts, telemetry.TopicErrors, telemetry.TopicConnectivity} {
		published[t] = m.records.WithLabelValues(string(t), "published")
		failed[t] = m.records.WithLabelValues(string(t), "failed")
	}
	return ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		err := next.Handle(ctx, rec)
		if err != nil {
			if c := failed[rec.Topic]; c != nil {
				c.Inc()
			}
		} else if c := published[rec.Topic]; c != nil {
			c.Inc()
		}
		return err
	})
}

// Publisher meters pub: the messages the broker accepted, how long that
// took, and the publish calls it did not accept (a cancelled one is not
// counted).
func (m *Registry) Publisher(pub pubsub.Publisher) pubsub.Publisher {
	return meteredPublisher{pub, m}
}

type meteredPublisher struct {
	pub pubsub.Publisher
	m   *Registry
}

func (b meteredPublisher) Publish(ctx context.Context, msgs []pubsub.Message) error {
	t0 := time.Now()
	err := b.pub.Publish(ctx, msgs)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.m.pubErrors.Inc()
		}
		return err
	}
	b.m.publish.Observe(time.Since(t0).Seconds())
	b.m.messages.Add(float64(len(msgs)))
	return nil
}

// persister is a broker that keeps retained messages on disk: the embedded
// one.
type persister interface {
	Persistence() embedded.PersistStatus
	RetainedRefused() int64
}

// watchStore exports how keeping retained messages on disk goes, and the
// clients' retained messages refused.
func (m *Registry) watchStore(p persister) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_save_failing",
			Help: "1 while the embedded broker cannot save its retained messages (data directory read-only or full); /healthz then says degraded.",
		}, func() float64 {
			if p.Persistence().Failing {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_save_failures_total",
			Help: "Saves of the embedded broker's retained messages that failed.",
		}, func() float64 { return float64(p.Persistence().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "fleet2mqtt", Name: "mqtt_retained_refused_total",
			Help: "Retained messages of MQTT clients refused because the clients' retained messages were at their limit (mqtt.embedded.client_retained_messages, client_retained_bytes).",
		}, func() float64 { return float64(p.RetainedRefused()) }),
	)
}
