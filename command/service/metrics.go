package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

var (
	commandsDesc = prometheus.NewDesc("fleet2mqtt_vehicle_commands_month",
		"Vehicle command requests sent to Tesla's Fleet API this calendar month (UTC), per car, session handshakes included: what Tesla bills.",
		[]string{"car", "month"}, nil)
	wakesDesc = prometheus.NewDesc("fleet2mqtt_vehicle_wakes_month",
		"wake_up requests sent to Tesla's Fleet API this calendar month (UTC), per car: what Tesla bills.",
		[]string{"car", "month"}, nil)
)

// Collector exports the billed command requests and wake-ups per car in
// the current month, each car labelled car(VIN).
func (s *Service) Collector(car func(vin string) string) prometheus.Collector {
	return collector{s.counters, car}
}

type collector struct {
	c   *command.Counters
	car func(vin string) string
}

func (cc collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- commandsDesc
	ch <- wakesDesc
}

func (cc collector) Collect(ch chan<- prometheus.Metric) {
	month := command.Month(time.Now())
	for vin, u := range cc.c.Usage(month) {
		car := cc.car(vin)
		ch <- prometheus.MustNewConstMetric(commandsDesc, prometheus.CounterValue, float64(u.Commands), car, month)
		ch <- prometheus.MustNewConstMetric(wakesDesc, prometheus.CounterValue, float64(u.Wakes), car, month)
	}
}
