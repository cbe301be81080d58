package activity

// Status is what a car is doing, derived from its stream (see the package
// documentation for the rules).
type Status uint8

// Statuses. StatusUnknown is the status of a car the tracker has seen
// nothing of yet; it is never published.
const (
	StatusUnknown Status = iota
	StatusDriving
	StatusCharging
	StatusParked
	StatusAsleep
	StatusOffline
	StatusUpdating
)

var statusNames = [...]string{"unknown", "driving", "charging", "parked", "asleep", "offline", "updating"}

// String returns the status as published: driving, charging, parked,
// asleep, offline, updating (or unknown).
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Statuses returns the published statuses in a stable order, for Home
// Assistant's enum options.
func Statuses() []string {
	return []string{"driving", "charging", "parked", "asleep", "offline", "updating"}
}

// ParseStatus returns the status named s.
func ParseStatus(s string) (Status, bool) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), true
		}
	}
	return StatusUnknown, false
}

// MarshalText makes a Status read as its name in JSON and YAML.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status name; an unknown name reads as StatusUnknown.
func (s *Status) UnmarshalText(b []byte) error {
	*s, _ = ParseStatus(string(b))
	return nil
}
