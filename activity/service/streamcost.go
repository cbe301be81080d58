package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/ingest"
	"github.com/fleet2mqtt/fleet2mqtt/internal/streamcost"
	"github.com/fleet2mqtt/fleet2mqtt/internal/topic"
	"github.com/fleet2mqtt/fleet2mqtt/telemetry"
)

// streamCostEvery is how often each car's estimate is published.
const streamCostEvery = time.Minute

// streamCost counts what each car streams and estimates its monthly bill:
// on /metrics, and on <prefix>/<VIN>/streaming/cost for Home Assistant.
type streamCost struct {
	meter  *streamcost.Meter
	budget float64
	// last is the payload last published per car, and when a car over
	// budget was last logged; used by the publishing loop only.
	last   map[string]string
	warned map[string]time.Time
	descs  streamCostDescs
	car    func(vin string) string // the car label on /metrics
}

func newStreamCost(budget float64, car func(vin string) string) *streamCost {
	return &streamCost{meter: streamcost.New(), budget: budget, last: map[string]string{}, warned: map[string]time.Time{},
		descs: newStreamCostDescs(), car: car}
}

// Stage is a stage of the record path: it counts every record the stages
// after it published (a record that failed is sent again, and counted
// then), per car and signal, for the streaming bill's estimate.
func (s *Service) Stage(next ingest.Sink) ingest.Sink {
	m := s.cost.meter
	return ingest.SinkFunc(func(ctx context.Context, rec *telemetry.Record) error {
		if err := next.Handle(ctx, rec); err != nil {
			return err
		}
		m.Observe(rec, time.Now())
		return nil
	})
}

// PublishStreamCost publishes each car's estimate when it changed, and
// warns about cars over the budget (at most daily per car); Component
// calls it every minute. It is not safe for concurrent use.
func (s *Service) PublishStreamCost(ctx context.Context, now time.Time) {
	sc := s.cost
	var msgs []pubsub.Message
	var vins []string
	for _, e := range sc.meter.Estimates(now, sc.budget) {
		if e.OverBudget && now.Sub(sc.warned[e.VIN]) >= 24*time.Hour {
			sc.warned[e.VIN] = now
			s.log.Warn("a car's streaming costs more than the budget: stream fewer signals or less often (setup page, signals step)",
				"vin", e.VIN, "monthly_dollars", e.MonthlyDollars, "budget_dollars", e.BudgetDollars, "top_signal", topSignal(e))
		}
		if s.cfg.Exclusive {
			continue
		}
		payload, err := json.Marshal(e)
		if err != nil || sc.last[e.VIN] == string(payload) {
			continue
		}
		msgs = append(msgs, pubsub.Message{Topic: s.cfg.Prefix + "/" + e.VIN + "/" + topic.StreamingCostLevel,
			Payload: payload, QoS: s.cfg.QoS, Retain: true})
		vins = append(vins, e.VIN)
	}
	if len(msgs) == 0 {
		return
	}
	if err := s.pub.Publish(ctx, msgs); err != nil {
		s.log.Warn("cannot publish the streaming cost estimates", "err", err)
		return
	}
	for i, m := range msgs {
		sc.last[vins[i]] = string(m.Payload)
	}
}

func topSignal(e streamcost.Estimate) string {
	if len(e.Top) == 0 {
		return ""
	}
	return e.Top[0].Signal
}

// Collector is the streaming cost meter on /metrics: signals and records
// per car, the monthly estimate and whether it is over the budget.
func (s *Service) Collector() prometheus.Collector { return s.cost }

// streamCostDescs are the metrics of the meter, read at scrape time.
type streamCostDescs struct {
	signals, records, monthly, over *prometheus.Desc
}

func newStreamCostDescs() streamCostDescs {
	return streamCostDescs{
		signals: prometheus.NewDesc("fleet2mqtt_vehicle_signals_total",
			"Signals (data items) a car streamed since fleet2mqtt started, by signal: what Tesla bills.", []string{"car", "signal"}, nil),
		records: prometheus.NewDesc("fleet2mqtt_vehicle_streamed_records_total",
			"Records a car streamed since fleet2mqtt started (every topic).", []string{"car"}, nil),
		monthly: prometheus.NewDesc("fleet2mqtt_vehicle_streaming_monthly_dollars",
			"Estimate of Tesla's monthly bill for a car's stream in US$, from its last 24 hours, before the monthly credit.", []string{"car"}, nil),
		over: prometheus.NewDesc("fleet2mqtt_vehicle_streaming_over_budget",
			"1 when a car's estimate exceeds activity.streaming_budget_dollars.", []string{"car"}, nil),
	}
}

// Describe and Collect make the meter a Prometheus collector.
func (sc *streamCost) Describe(ch chan<- *prometheus.Desc) {
	ch <- sc.descs.signals
	ch <- sc.descs.records
	ch <- sc.descs.monthly
	ch <- sc.descs.over
}

func (sc *streamCost) Collect(ch chan<- prometheus.Metric) {
	for _, e := range sc.meter.Estimates(time.Now(), sc.budget) {
		car := sc.car(e.VIN)
		for sig, n := range e.Signals {
			ch <- prometheus.MustNewConstMetric(sc.descs.signals, prometheus.CounterValue, float64(n), car, sig)
		}
		ch <- prometheus.MustNewConstMetric(sc.descs.records, prometheus.CounterValue, float64(e.Records), car)
		ch <- prometheus.MustNewConstMetric(sc.descs.monthly, prometheus.GaugeValue, e.MonthlyDollars, car)
		if sc.budget > 0 {
			over := 0.0
			if e.OverBudget {
				over = 1
			}
			ch <- prometheus.MustNewConstMetric(sc.descs.over, prometheus.GaugeValue, over, car)
		}
	}
}
