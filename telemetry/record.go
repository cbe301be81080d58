package telemetry

import "time"

// Topic is the kind of record a vehicle sends, named as on the wire.
type Topic string

// Topics a vehicle streams. Connectivity records are made by the server
// when a vehicle connects or disconnects.
const (
	TopicV            Topic = "V"
	TopicAlerts       Topic = "alerts"
	TopicErrors       Topic = "errors"
	TopicConnectivity Topic = "connectivity"
)

// Record is one message from a vehicle, decoded and normalised. Exactly one
// of Data, Alerts, Errors or Connectivity is meaningful, by Topic.
type Record struct {
	// VIN comes from the vehicle's client certificate, never from the message.
	VIN   string
	Topic Topic
	// TxID is the transaction id the acknowledgement echoes.
	TxID string
	// CreatedAt is when the vehicle made the record (the payload's own
	// timestamp when it has one, else the envelope's).
	CreatedAt time.Time
	// ReceivedAt is when the server read the frame.
	ReceivedAt time.Time
	// Resend is set when the vehicle says it sends this record again.
	Resend bool

	Data         []Datum
	Alerts       []Alert
	Errors       []VehicleError
	Connectivity Connectivity
}

// Datum is one signal value of a V record.
type Datum struct {
	Field Field
	Value Value
}

// Reset empties r for reuse, keeping the capacity of its slices.
func (r *Record) Reset() {
	*r = Record{Data: r.Data[:0], Alerts: r.Alerts[:0], Errors: r.Errors[:0]}
}

// Audience is who an alert is meant for.
type Audience uint8

// Alert audiences, numbered as on the wire.
const (
	AudienceUnknown Audience = iota
	AudienceCustomer
	AudienceService
	AudienceServiceFix
)

var audienceNames = [...]string{"Unknown", "Customer", "Service", "ServiceFix"}

func (a Audience) String() string {
	if int(a) < len(audienceNames) {
		return audienceNames[a]
	}
	return "Unknown"
}

// Alert is one vehicle alert. An alert without EndedAt is active.
type Alert struct {
	Name      string
	Audiences []Audience
	StartedAt time.Time
	EndedAt   time.Time // zero while the alert is active
}

// Active reports whether the alert has not ended.
func (a Alert) Active() bool { return a.EndedAt.IsZero() }

// VehicleError is one error the vehicle's telemetry client reports.
type VehicleError struct {
	Name      string
	CreatedAt time.Time
	Tags      map[string]string
	Body      string
}

// Status is a vehicle's connection state.
type Status uint8

// Connection states, numbered as on the wire.
const (
	StatusUnknown Status = iota
	StatusConnected
	StatusDisconnected
)

var statusNames = [...]string{"UNKNOWN", "CONNECTED", "DISCONNECTED"}

// String returns the wire name: UNKNOWN, CONNECTED or DISCONNECTED.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "UNKNOWN"
}

// Connectivity reports that a vehicle connected or disconnected.
type Connectivity struct {
	ConnectionID     string
	Status           Status
	NetworkInterface string // e.g. wifi or cellular, as the vehicle said
	CreatedAt        time.Time
}
