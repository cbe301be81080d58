package setup

import (
	"context"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// Run keeps the cars' configs current until ctx ends: it asks Tesla every
// SyncCheckInterval whether pending configs reached their cars, and every
// RepushCheckInterval (and once at the start) pushes a config again when
// it nears its expiry (fleetapi.RepushMargin before exp) or when the
// server's CA chain changed. Failures are logged and shown on the page;
// Run returns nil when ctx ends.
func (w *Wizard) Run(ctx context.Context) error {
	syncTick := time.NewTicker(w.deps.SyncCheckInterval)
	defer syncTick.Stop()
	repushTick := time.NewTicker(w.deps.RepushCheckInterval)
	defer repushTick.Stop()
	w.repushDue(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-syncTick.C:
			w.checkCars(ctx, true, true)
		case <-repushTick.C:
			w.repushDue(ctx)
		}
	}
}

// repushDue pushes the config again to every car whose config expires
// soon or names a CA chain the server no longer serves. Each car gets its
// own config back, with a new exp and the current chain.
func (w *Wizard) repushDue(ctx context.Context) {
	w.mu.Lock()
	now := w.now()
	ca, caErr := w.serverCA()
	type job struct {
		vin string
		cfg fleetapi.TelemetryConfig
	}
	var jobs []job
	for vin, c := range w.st.Cars {
		if c.Config == nil || (c.Status != carActive && c.Status != carPending) {
			continue
		}
		expiring := fleetapi.NeedsRepush(c.Config.Exp, now)
		caChanged := caErr == nil && caHash(ca) != caHash(c.Config.CA)
		if !expiring && !caChanged {
			continue
		}
		cfg := *c.Config
		cfg.Exp = now.Add(fleetapi.ConfigLifetime).Unix()
		if caErr == nil {
			cfg.CA = ca
		}
		jobs = append(jobs, job{vin, cfg})
	}
	key := w.key
	var owner *fleetapi.Owner
	var setupErr error
	if len(jobs) > 0 {
		owner, setupErr = w.ownerLocked()
	}
	w.mu.Unlock()
	if setupErr == nil && key == nil {
		setupErr = errNoKey
	}
	for _, j := range jobs {
		var res *fleetapi.PushResult
		err := setupErr
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, teslaTimeout)
			res, err = owner.ConfigureTelemetry(tctx, key, j.cfg, j.vin)
			cancel()
		}
		w.mu.Lock()
		c := w.st.Cars[j.vin]
		switch {
		case c == nil || c.Config == nil:
			// Removed meanwhile.
		case err != nil:
			c.Problem = "Pushing the config again before it expires failed: " + fleetapi.Explain(err)
			w.log.Warn("setup: automatic config push failed", "vin", j.vin, "err", err)
		case res.Skipped[j.vin] != "":
			reason := res.Skipped[j.vin]
			c.Problem = "Pushing the config again before it expires was refused: " + reason.Explain()
			w.log.Warn("setup: automatic config push skipped", "vin", j.vin, "reason", string(reason))
		default:
			cfg := j.cfg
			c.Config, c.PushedAt, c.Status, c.Problem, c.Explain = &cfg, now, carPending, "", ""
			w.log.Info("setup: config pushed again", "vin", j.vin, "exp", time.Unix(cfg.Exp, 0).UTC().Format(time.DateOnly))
		}
		if saveErr := w.st.save(join(w.dir, stateFile)); saveErr != nil {
			w.log.Error("setup: save state", "err", saveErr)
		}
		w.mu.Unlock()
		if err != nil {
			w.teslaFailed(err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}
