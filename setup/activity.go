package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
	"github.com/fleet2mqtt/fleet2mqtt/activity/history"
	"github.com/fleet2mqtt/fleet2mqtt/internal/streamcost"
)

// Activity is what the setup page shows of what the cars do, from
// fleet2mqtt's derived state (package activity), its history of sessions
// and its streaming meter, and where it applies the places the owner adds
// on the page. Methods other than SetOwnerPlaces must not block for long.
type Activity interface {
	// Cars returns the VINs fleet2mqtt keeps sessions of or has seen
	// streaming, sorted.
	Cars() []string
	// Sessions returns the car's newest sessions of kind (drives or
	// charges), newest first, at most limit. ErrHistoryOff when
	// fleet2mqtt keeps no history.
	Sessions(vin string, kind activity.Kind, limit int) ([]activity.Session, error)
	// Monthly returns the car's totals per calendar month in TimeZone,
	// oldest first. ErrHistoryOff as Sessions.
	Monthly(vin string) ([]history.Month, error)
	// Export writes every session of the car as format (ExportCSV or
	// ExportJSON). ErrHistoryOff as Sessions.
	Export(w io.Writer, vin string, format ExportFormat) error
	// TimeZone is the zone of the monthly totals and of the times the
	// page shows (activity.time_zone).
	TimeZone() *time.Location
	// Position returns the car's latest position and the place it is
	// at; false when the car has sent no location.
	Position(vin string) (Position, bool)
	// ConfigPlaces returns the places of the configuration file, which
	// the page shows but cannot change.
	ConfigPlaces() []activity.Place
	// SetOwnerPlaces makes places (added on the page) the places next to
	// the configuration's, at once: every car's place is looked up again
	// and published. It returns an error, and changes nothing, when the
	// places cannot be used (ErrHistoryOff when fleet2mqtt derives no
	// places); a failure to publish is the implementation's to log, as
	// what changed goes out with the car's next record.
	SetOwnerPlaces(ctx context.Context, places []activity.Place) error
	// StreamingEstimate returns what the car's stream costs, measured
	// from what it actually sent; false when it has sent nothing since
	// fleet2mqtt started.
	StreamingEstimate(vin string) (streamcost.Estimate, bool)
}

// ErrHistoryOff means fleet2mqtt derives no drives, charges or places
// (activity.enabled is false).
var ErrHistoryOff = errors.New("fleet2mqtt keeps no drives, charges or places: activity.enabled is false in the configuration")

// Position is where a car is.
type Position struct {
	Latitude, Longitude float64
	// Place is the name of the place the car is at, "" elsewhere.
	Place string
}

// ExportFormat is a format of the history's download.
type ExportFormat string

// The formats of the history's download.
const (
	ExportCSV  ExportFormat = "csv"
	ExportJSON ExportFormat = "json"
)

// OwnerPlaces returns the places the owner added on the setup page, kept
// in dataDir's setup state, for the start of fleet2mqtt (before New).
// Nothing kept, or no setup state yet, is no places.
func OwnerPlaces(dataDir string) ([]activity.Place, error) {
	path := filepath.Join(dataDir, "setup", stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the places added on the setup page: %w", err)
	}
	var st struct {
		Places []activity.Place `json:"places"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("read the places added on the setup page from %s: %w", path, err)
	}
	return st.Places, nil
}
