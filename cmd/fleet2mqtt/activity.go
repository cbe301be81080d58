package main

import (
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	activitysvc "github.com/fleet2mqtt/fleet2mqtt/activity/service"
	"github.com/fleet2mqtt/fleet2mqtt/bridge/pubsub"
	"github.com/fleet2mqtt/fleet2mqtt/config"
	"github.com/fleet2mqtt/fleet2mqtt/simulate"
)

// buildActivity makes the derived state (activity/service): the streaming
// cost meter on /metrics, and with activity.enabled the trackers, which
// the bridge feeds, and the history.
func (a *app) buildActivity(pub pubsub.Publisher) (err error) {
	acfg, err := a.cfg.ActivityConfig()
	if err != nil {
		return err
	}
	a.activity, err = activitysvc.New(activitysvc.Config{Activity: acfg, TeslaMate: a.cfg.MQTT.TeslaMate, DataDir: a.cfg.DataDir,
		Prefix: a.cfg.MQTT.Prefix, QoS: a.cfg.MQTT.QoS, Exclusive: a.cfg.MQTT.Compat.Exclusive, Car: a.metrics.Car},
		a.bridge, pub, a.log)
	if err == nil {
		a.metrics.MustRegister(a.activity.Collector())
	}
	return err
}

// demoActivity fits the derived state to the demo: the simulated cars
// live speed times faster than the clock their records are stamped with,
// so the rules' periods shrink by as much; without places of the owner's
// own, the simulated route's Home (with a price) and Work are the places;
// TeslaMate's topics are on.
func demoActivity(cfg *config.Config, speed float64) {
	a := &cfg.Activity
	for _, d := range []*time.Duration{&a.DriveGrace, &a.ChargeGrace, &a.DriveTimeout, &a.UpdateTimeout, &a.StaleAfter} {
		if *d > 0 {
			*d = max(time.Duration(float64(*d)/speed), time.Millisecond)
		}
	}
	if len(cfg.Places) == 0 {
		price := 0.30
		for _, p := range simulate.Places() {
			pl := activity.Place{Name: p.Name, Latitude: p.Latitude, Longitude: p.Longitude, Radius: 150}
			if p.Name == "Home" {
				pl.PricePerKWh = &price
			}
			cfg.Places = append(cfg.Places, pl)
		}
		if a.Currency == "" {
			a.Currency = "USD"
		}
	}
	if a.Enabled {
		cfg.MQTT.TeslaMate.Enabled = true
	}
}
