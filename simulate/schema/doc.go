// Package schema holds fleet2mqtt's own protobuf schema for the payloads a
// Tesla vehicle streams: Payload (topic V), VehicleAlerts (alerts),
// VehicleErrors (errors) and VehicleConnectivity (the server's connectivity
// events). It is wire-compatible with Tesla's fleet-telemetry protos: every
// message, oneof member and enum value has the same number and type, so
// proto.Unmarshal of a vehicle's bytes yields the same values and
// deterministic proto.Marshal gives the same bytes back.
//
// The simulator encodes its cars' payloads with these types, and ingest's
// tests use them as the reference that the server's hand-written decoder
// must agree with. The server itself never imports this package: it decodes
// payloads with protowire alone, so serving needs no generated types and no
// protobuf reflection; TestServerDoesNotImportSchema keeps it that way.
//
// Everything except this file is generated. The .proto files come from the
// tables in telemetry/spec (field_enum.tsv, value_oneof.tsv,
// value_enums.tsv) through ./internal/genproto; the Go code comes from
// protoc with protoc-gen-go. Regenerate both with
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 # once; must be on PATH
//	go generate ./simulate/schema/
//
// protoc-gen-go must match the google.golang.org/protobuf version in go.mod.
//
// All four files share the proto package fleet2mqtt.vehicle, where enum
// value names are package-wide symbols. The generator keeps every name of
// the tables except where a name is already taken by a type or an earlier
// enum value; such a value is renamed to its enum's name followed by the
// original name. Today that affects one value: Audience's Unknown, which
// collides with Field's Unknown, is AudienceUnknown (Go:
// Audience_AudienceUnknown). Names never travel on the wire, so the rename
// does not affect compatibility.
//
// The files are registered under simulate/schema/*.proto (protoc runs from
// the module root's point of view) so that their paths cannot collide in the
// global protobuf registry with another module's vehicle_data.proto.
package schema

//go:generate go run ./internal/genproto -spec ../../telemetry/spec -out .
//go:generate protoc --proto_path=../.. --go_out=../.. --go_opt=paths=source_relative simulate/schema/vehicle_data.proto simulate/schema/vehicle_alert.proto simulate/schema/vehicle_error.proto simulate/schema/vehicle_connectivity.proto
