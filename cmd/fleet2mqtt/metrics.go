package main

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
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// metrics are fleet2mqtt's Prometheus metrics. They are gathered at the
// seams between the parts (the ingest sink and the bridge publisher) so
// that the parts themselves stay free of instrumentation.
type metrics struct {
	reg       *prometheus.Registry
	records   *prometheus.CounterVec // by topic and outcome
	messages  prometheus.Counter
	publish   prometheus.Histogram
	pubErrors prometheus.Counter
	// car is the value of the car label of per-car metrics for a VIN
	// (http.metrics_vins).
	car func(vin string) string
}

func newMetrics(vins bool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		car: carPseudonym,
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

// carPseudonym names a car on /metrics without its VIN: the first 8
// hexadecimal digits of the VIN's SHA-256 (printf %s VIN | sha256sum).
func carPseudonym(vin string) string {
	sum := sha256.Sum256([]byte(vin))
	return hex.EncodeToString(sum[:4])
}

// watchVehicles exports the vehicle listener's counters.
func (m *metrics) watchVehicles(s *ingest.Server) {
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

// watchBridge exports what the bridge left out past a car's limits.
func (m *metrics) watchBridge(b *bridge.Bridge) {
	counter := func(name, help string, v func(bridge.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "fleet2mqtt", Name: name, Help: help},
			func() float64 { return float64(v(b.Stats())) })
	}
	m.reg.MustRegister(
		counter("bridge_fields_refused_total", "Data items left out because their car already has 1,024 distinct fields (each would be a new retained topic); the records are acknowledged.", func(s bridge.Stats) int64 { return s.FieldsRefused }),
		counter("bridge_names_refused_total", "Alerts and errors left out because their car already has 256 distinct alert and error names; the records are acknowledged.", func(s bridge.Stats) int64 { return s.NamesRefused }),
	)
}

// queue is a broker client that holds messages while it waits for the
// broker: the external client.
type queue interface {
	QueueLen() int
}

// watchQueue exports how many messages wait for the broker, and how many
// may.
func (m *metrics) watchQueue(q queue, capacity int) {
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

// count counts records on their way from the vehicle listener to the
// bridge: a stage of the record path.
func (m *metrics) count(next ingest.Sink) ingest.Sink {
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

// publisher measures what the broker accepts and how fast.
type instrumentedBroker struct {
	broker
	m *metrics
}

func (b instrumentedBroker) Publish(ctx context.Context, msgs []pubsub.Message) error {
	t0 := time.Now()
	err := b.broker.Publish(ctx, msgs)
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

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
