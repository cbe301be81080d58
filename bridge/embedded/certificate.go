package embedded

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certificate serves a key pair from files and loads it again when a file
// changes (a renewed certificate), checking at most every recheck.
type certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

const recheck = 10 * time.Second

func loadCertificate(certFile, keyFile string, log *slog.Logger) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(time.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) load(now time.Time) error {
	mod, err := c.lastChange()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load MQTT certificate: %w", err)
	}
	c.cert, c.modTime, c.checked = &cert, mod, now
	return nil
}

func (c *certificate) lastChange() (time.Time, error) {
	var last time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return time.Time{}, fmt.Errorf("load MQTT certificate: %w", err)
		}
		if st.ModTime().After(last) {
			last = st.ModTime()
		}
	}
	return last, nil
}

// get is a tls.Config.GetCertificate. When the files changed but cannot be
// loaded (say, mid-renewal), it keeps serving the certificate it has.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.checked) >= recheck {
		c.checked = now
		if mod, err := c.lastChange(); err == nil && !mod.Equal(c.modTime) {
			if err := c.load(now); err != nil {
				c.log.Warn("keeping the previous MQTT certificate", "error", err)
			} else {
				c.log.Info("loaded renewed MQTT certificate", "file", c.certFile)
			}
		}
	}
	return c.cert, nil
}

func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}
