package setup

import (
	"context"
	"crypto/sha256"
	"strings"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

// run is Wizard.Run.
func (f *flow) run(ctx context.Context) error {
	syncTick := time.NewTicker(f.timing.SyncCheck)
	defer syncTick.Stop()
	repushTick := time.NewTicker(f.timing.RepushCheck)
	defer repushTick.Stop()
	f.repushDue(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-syncTick.C:
			f.checkCars(ctx, true, true)
		case <-repushTick.C:
			f.repushDue(ctx)
		}
	}
}

// repushDue pushes the config again to every car whose config expires
// soon or names a CA chain the server no longer serves. Each car gets its
// own config back, with a new exp and the current chain.
func (f *flow) repushDue(ctx context.Context) {
	now := f.timing.Now()
	ca, caErr := f.serverCA()
	type job struct {
		vin string
		cfg fleetapi.TelemetryConfig
	}
	var jobs []job
	f.store.read(func(st *state) {
		for vin, c := range st.Cars {
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
	})
	if len(jobs) == 0 {
		return
	}
	key := f.store.appKey()
	owner, setupErr := f.owner()
	if setupErr == nil && key == nil {
		setupErr = errNoKey
	}
	for _, j := range jobs {
		var res *fleetapi.PushResult
		err := setupErr
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, teslaTimeout)
			res, err = owner.ConfigureTelemetry(tctx, key.private, j.cfg, j.vin)
			cancel()
		}
		f.logSaveError(f.store.update(func(st *state) error {
			c := st.Cars[j.vin]
			switch {
			case c == nil || c.Config == nil:
				return errNoSave // removed meanwhile
			case err != nil:
				c.Problem = "Pushing the config again before it expires failed: " + fleetapi.Explain(err)
				f.log.Warn("setup: automatic config push failed", "vin", j.vin, "err", err)
			case res.Skipped[j.vin] != "":
				reason := res.Skipped[j.vin]
				c.Problem = "Pushing the config again before it expires was refused: " + reason.Explain()
				f.log.Warn("setup: automatic config push skipped", "vin", j.vin, "reason", string(reason))
			default:
				cfg := j.cfg
				c.Config, c.PushedAt, c.Status, c.Problem, c.Explain = &cfg, now, carPending, "", ""
				f.log.Info("setup: config pushed again", "vin", j.vin, "exp", time.Unix(cfg.Exp, 0).UTC().Format(time.DateOnly))
			}
			return nil
		}))
		if err != nil {
			f.teslaFailed(err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// caHash identifies a CA chain, to notice when the served chain changes.
func caHash(ca string) [32]byte { return sha256.Sum256([]byte(strings.TrimSpace(ca))) }
