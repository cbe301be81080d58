// Package history keeps the drives and charging sessions of every car in
// one file of the data directory: an embedded bbolt database, whose
// transactions are written and synced before Append returns, so a session
// that was appended survives a crash or a SIGKILL of the process.
//
// Layout: one bucket per car (its VIN); keys are the session's end time
// (big-endian Unix nanoseconds) and kind, so a car's sessions list in time
// order; values are the session summaries as JSON (activity.Session).
package history

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleet2mqtt/fleet2mqtt/activity"
)

// Store is the session history. It is safe for concurrent use; only one
// process may open the file at a time.
type Store struct {
	db *bolt.DB
}

// ErrLocked means another process holds the history file open.
var ErrLocked = errors.New("history file is in use by another process")

// Open opens (or creates) the history file at path, mode 0600.
func Open(path string) (*Store, error) {
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if fresh {
			// A file this call began (the disk is full, say) is not a
			// database the next start could open: it goes.
			os.Remove(path)
		}
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open history %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func key(end time.Time, kind activity.Kind) []byte {
	k := make([]byte, 9)
	binary.BigEndian.PutUint64(k, uint64(end.UnixNano()))
	k[8] = 'c'
	if kind == activity.KindDrive {
		k[8] = 'd'
	}
	return k
}

// Append stores a session that ended; it returns once the session is on
// disk. Appending the same session again (same car, end time and kind)
// replaces it, so a summary republished after a restart is kept once.
func (s *Store) Append(ses activity.Session) error {
	if ses.VIN == "" {
		return errors.New("append session: no VIN")
	}
	data, err := json.Marshal(ses)
	if err != nil {
		return fmt.Errorf("append session: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(ses.VIN))
		if err != nil {
			return fmt.Errorf("append session of %s: %w", ses.VIN, err)
		}
		return b.Put(key(ses.End, ses.Kind), data)
	})
}

// Filter selects sessions. Zero fields select everything.
type Filter struct {
	Kind activity.Kind // drive, charge, or "" for both
	// From and To bound the end time: From <= end < To.
	From, To time.Time
	// Limit keeps the newest Limit sessions (0: all).
	Limit int
}

// List returns the car's sessions that match f, newest first.
func (s *Store) List(vin string, f Filter) ([]activity.Session, error) {
	var out []activity.Session
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(vin))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if f.To.IsZero() {
			k, v = c.Last()
		} else {
			// The first key at or after To, then the one before it.
			if k, _ = c.Seek(key(f.To, activity.KindCharge)[:8]); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		var from []byte
		if !f.From.IsZero() {
			from = key(f.From, activity.KindCharge)[:8]
		}
		for ; k != nil; k, v = c.Prev() {
			if from != nil && bytes.Compare(k[:8], from) < 0 {
				break
			}
			var ses activity.Session
			if err := json.Unmarshal(v, &ses); err != nil {
				return fmt.Errorf("read session %x of %s: %w", k, vin, err)
			}
			if f.Kind != "" && ses.Kind != f.Kind {
				continue
			}
			out = append(out, ses)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// Cars returns the VINs that have sessions, in byte order.
func (s *Store) Cars() ([]string, error) {
	var vins []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			vins = append(vins, string(name))
			return nil
		})
	})
	return vins, err
}

// Month is the totals of one calendar month of one car.
type Month struct {
	Month          string  `json:"month"` // "2026-03", in the zone given to Monthly
	Drives         int     `json:"drives"`
	DistanceKm     float64 `json:"distance_km"`
	DriveMinutes   float64 `json:"drive_minutes"`
	DriveEnergyKWh float64 `json:"drive_energy_kwh"`
	Charges        int     `json:"charges"`
	EnergyAddedKWh float64 `json:"energy_added_kwh"`
	EnergyUsedKWh  float64 `json:"energy_used_kwh"`
	Cost           float64 `json:"cost"`
}

// Monthly returns the car's totals per calendar month in loc (by each
// session's end), oldest first.
func (s *Store) Monthly(vin string, loc *time.Location) ([]Month, error) {
	all, err := s.List(vin, Filter{})
	if err != nil {
		return nil, err
	}
	var out []Month
	for i := len(all) - 1; i >= 0; i-- {
		ses := &all[i]
		m := ses.End.In(loc).Format("2006-01")
		if len(out) == 0 || out[len(out)-1].Month != m {
			out = append(out, Month{Month: m})
		}
		t := &out[len(out)-1]
		switch ses.Kind {
		case activity.KindDrive:
			t.Drives++
			t.DistanceKm += f(ses.DistanceKm)
			t.DriveMinutes += ses.DurationMin
			t.DriveEnergyKWh += f(ses.EnergyUsedKWh)
		case activity.KindCharge:
			t.Charges++
			t.EnergyAddedKWh += f(ses.EnergyAddedKWh)
			t.EnergyUsedKWh += f(ses.EnergyUsedKWh)
			t.Cost += f(ses.Cost)
		}
	}
	for i := range out {
		t := &out[i]
		t.DistanceKm, t.DriveMinutes, t.DriveEnergyKWh = r2(t.DistanceKm), r2(t.DriveMinutes), r2(t.DriveEnergyKWh)
		t.EnergyAddedKWh, t.EnergyUsedKWh, t.Cost = r2(t.EnergyAddedKWh), r2(t.EnergyUsedKWh), r2(t.Cost)
	}
	return out, nil
}

func f(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func r2(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 2, 64), 64)
	return r
}

// Prune deletes every session that ended before cutoff (retention) and
// returns how many it deleted.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	limit := key(cutoff, activity.KindCharge)[:8]
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return fmt.Errorf("prune sessions of %s: %w", name, err)
				}
				n++
			}
			return nil
		})
	})
	return n, err
}

// WriteJSON writes the car's sessions that match f as one JSON array,
// newest first.
func (s *Store) WriteJSON(w io.Writer, vin string, f Filter) error {
	list, err := s.List(vin, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []activity.Session{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// csvHeader is the header row of WriteCSV; units are in the names.
var csvHeader = []string{
	"kind", "vin", "start", "end", "duration_min", "end_reason", "start_place", "end_place",
	"distance_km", "odometer_start_km", "odometer_end_km", "soc_start", "soc_end",
	"energy_used_kwh", "energy_added_kwh", "avg_speed_kmh", "max_speed_kmh",
	"avg_power_kw", "max_power_kw", "fast_charger", "cost", "currency",
}

// WriteCSV writes the car's sessions that match f as CSV with a header
// row, newest first; times are RFC 3339 in UTC, absent figures empty.
func (s *Store) WriteCSV(w io.Writer, vin string, f Filter) error {
	list, err := s.List(vin, f)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	num := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	for _, x := range list {
		row := []string{
			string(x.Kind), x.VIN, x.Start.UTC().Format(time.RFC3339), x.End.UTC().Format(time.RFC3339),
			strconv.FormatFloat(x.DurationMin, 'f', -1, 64), x.EndReason, x.StartPlace, x.EndPlace,
			num(x.DistanceKm), num(x.OdometerStartKm), num(x.OdometerEndKm), num(x.SocStart), num(x.SocEnd),
			num(x.EnergyUsedKWh), num(x.EnergyAddedKWh), num(x.AvgSpeedKmh), num(x.MaxSpeedKmh),
			num(x.AvgPowerKW), num(x.MaxPowerKW), strconv.FormatBool(x.FastCharger), num(x.Cost), x.Currency,
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
