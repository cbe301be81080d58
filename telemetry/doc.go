// Package telemetry is fleet2mqtt's domain model: the records a vehicle
// streams (signals, alerts, errors, connectivity), typed signal values, and
// the catalog of every signal with its kind, unit and Home Assistant hints.
//
// A record also has a JSON form (Record.AppendJSONMembers), which
// `fleet2mqtt decode` prints.
//
// It depends on the standard library only; the wire formats live in ingest
// and the MQTT representation in bridge.
package telemetry

//go:generate go run ./internal/gencatalog -spec spec -out catalog_gen.go
