package main

// Vehicle commands: `fleet2mqtt command`, and in serve the command
// service (command/service). See docs/commands.md.

import (
	"context"
	"io"
	"log/slog"
	"os"

	vcmd "github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/service"
	"github.com/fleet2mqtt/fleet2mqtt/config"
)

// runCommand implements `fleet2mqtt command`.
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return vcmd.RunCLI(ctx, args, stdout, stderr, vcmd.CLIEnv{
		Resolve: func(_ context.Context, f vcmd.CLIFlags) (vcmd.Config, *slog.Logger, error) {
			if f.Config == "" {
				f.Config = os.Getenv("FLEET2MQTT_CONFIG")
			}
			cfg, err := config.Load(f.Config)
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				return vcmd.Config{}, nil, err
			}
			creds := commandCredentials(cfg)
			creds.KeyFile, creds.TokenFile, creds.API = f.Key, f.TokenFile, f.API
			ec, err := creds.EngineConfig()
			return ec, cfg.Log.Logger(stderr), err
		},
	})
}

// commandCredentials are where commands find the setup page's data.
func commandCredentials(cfg config.Config) service.Credentials {
	return service.Credentials{Setup: cfg.Setup, DataDir: cfg.DataDir, Settings: cfg.Commands}
}

// buildCommands makes the command service of a (not started) and
// exports its billed requests on /metrics.
func (a *app) buildCommands() (err error) {
	a.cmd, err = service.New(service.Config{Credentials: commandCredentials(a.cfg), Section: "commands",
		Prefix: a.cfg.MQTT.Prefix, QoS: a.cfg.MQTT.QoS, Broker: a.broker}, a.log.With("component", "commands"))
	if err == nil {
		a.metrics.MustRegister(a.cmd.Collector(a.metrics.Car))
	}
	return err
}
