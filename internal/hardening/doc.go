// Package hardening proves that fleet2mqtt holds under load, faults and
// hostile input, loses no acknowledged record and lets nobody in. It holds
// no code of its own: its tests, behind the build tag hardening so that a
// plain go test ./... stays fast, build the real binary and drive it as a
// process on loopback (kill -9 included), and drive the setup page
// in-process against the fake Tesla where the binary cannot reach one.
//
//	go test -tags hardening -timeout 15m ./internal/hardening/
//	go test -tags hardening -timeout 15m ./internal/hardening/ -update   # rewrite docs/hardening.md
//
// Every case adds a row to the table in docs/hardening.md: what was tried,
// what must hold, whether it held, and its figures. A case that does not
// hold fails its test; it is never skipped.
//
// Sizes and durations come from the environment, with defaults that fit a
// two-core machine within about ten minutes:
//
//	HARDENING_CARS            simulated cars of the load test (1000)
//	HARDENING_LOAD_DURATION   how long they stream (30s)
//	HARDENING_RECORD_INTERVAL each car's time between records (1s)
//	HARDENING_FIELDS          signals per record, the first being the record's marker (5)
//	HARDENING_MAX_RSS_MB      peak memory of fleet2mqtt allowed under load (384)
//	HARDENING_FAULT_CARS      cars streaming through the fault tests (20)
//	HARDENING_FAULT_CYCLES    broker restarts and fleet2mqtt kills per test (3)
//	HARDENING_BURST           connection attempts of the burst, per listener (10000)
//	HARDENING_BURST_RATE      their rate per second (10000)
//	HARDENING_FUZZTIME        time per fuzz target of the module (3s; 0 skips fuzzing)
//	HARDENING_WRITE_KILLS     kills of the process running fleet2mqtt's file writers (150)
//	HARDENING_SLOW_TLS        clients crawling through the TLS handshake at once (500)
//
// The suite needs Linux (/proc, SIGKILL), mosquitto for the external
// broker (Debian package mosquitto), and, for the disk-full cases, the
// right to mount a small tmpfs and bind mounts (root); without it a
// read-only directory stands in. The renegotiation attempts need openssl.
package hardening
