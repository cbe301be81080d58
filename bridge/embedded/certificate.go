package embedded

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
)

// loadCertificate serves the TLS listeners' key pair from its files and
// follows its renewals (see certs.Files: a changed pair that cannot be
// loaded is reported once, and the previous one stays in service).
func loadCertificate(c TLSConfig, log *slog.Logger) (*certs.Files, error) {
	f, err := certs.NewFiles(c.CertFile, c.KeyFile, log, certs.FilesOptions{
		Listener: "MQTT TLS listener",
		CertKey:  "tls.cert_file", KeyKey: "tls.key_file",
		Recheck: certs.DefaultRecheck,
	})
	if err != nil {
		return nil, fmt.Errorf("load MQTT certificate: %w", err)
	}
	return f, nil
}

// serverTLS is the configuration of a TLS listener serving src.
func serverTLS(src certs.Source) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	src.Configure(tc)
	return tc
}
