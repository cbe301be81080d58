// Package testenv starts real services for tests: a mosquitto broker on a
// free loopback port, free ports, and a throw-away certificate authority
// with a server certificate for loopback TLS listeners.
//
// Typical use from another package's test:
//
//	broker := testenv.Mosquitto(t)
//	// connect to broker.URL() ("mqtt://127.0.0.1:PORT") or broker.Addr
//	broker.Stop()  // SIGTERM; sessions and queued QoS 1 messages are saved
//	broker.Start() // same port, same data
//
// Note that mosquitto 2.0 saves the session of a client (subscriptions,
// queued QoS 1 messages) across Stop and Start only if the client connected
// with clean start 0 and a session expiry interval; a session started with
// clean start 1 is kept in memory but not saved.
//
// Set TESTENV_MOSQUITTO_DEBUG=1 to make the broker log every packet
// (Broker.Log shows it).
//
// Everything listens on 127.0.0.1 only and lives in t.TempDir(); the broker
// is stopped by t.Cleanup. When the mosquitto binary is missing the test is
// skipped, or failed when the environment variable CI is "true", with a
// message naming the Debian package to install (mosquitto).
package testenv
