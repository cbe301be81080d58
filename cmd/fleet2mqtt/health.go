package main

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
)

// persister is a broker that keeps retained messages on disk: the embedded
// one.
type persister interface {
	Persistence() embedded.PersistStatus
	RetainedRefused() int64
}

// retainedSaveFailing reports a broker that cannot save its retained
// messages now: /healthz says degraded.
func (a *app) retainedSaveFailing() bool {
	p, ok := a.broker.(persister)
	return ok && p.Persistence().Failing
}

// finalSaveError reports a broker that could not save its retained
// messages when it stopped: changes since the fault are lost, and the
// process must say so with its exit status.
func (a *app) finalSaveError() error {
	if p, ok := a.broker.(persister); ok {
		if st := p.Persistence(); st.Failing {
			return fmt.Errorf("retained MQTT messages not saved at shutdown (failing since %s): %s",
				st.FailingSince.Format(time.RFC3339), st.LastError)
		}
	}
	return nil
}

// watchStore exports how keeping retained messages on disk goes, and the
// clients' retained messages refused.
func (m *metrics) watchStore(p persister) {
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
