package setup

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxSeenCars bounds the cars seenCars remembers.
const maxSeenCars = 1000

// seenCars holds, per VIN, when records arrived. Ingest notes every record
// (Wizard.RecordSeen), so it takes no lock; the zero value is ready.
type seenCars struct {
	m     sync.Map // VIN → *seenCar
	count atomic.Int32
}

// seenCar is when a car's records arrived, in Unix nanoseconds.
type seenCar struct {
	first, last atomic.Int64
}

// record notes a record from vin at at.
func (s *seenCars) record(vin string, at time.Time) {
	ns := at.UnixNano()
	if v, ok := s.m.Load(vin); ok {
		v.(*seenCar).note(ns)
		return
	}
	if s.count.Load() >= maxSeenCars {
		return
	}
	sc := &seenCar{}
	sc.first.Store(ns)
	sc.last.Store(ns)
	if v, loaded := s.m.LoadOrStore(vin, sc); loaded {
		v.(*seenCar).note(ns)
		return
	}
	s.count.Add(1)
}

// note widens the car's first–last span to include ns; records of
// concurrent connections may arrive slightly out of order.
func (sc *seenCar) note(ns int64) {
	for {
		old := sc.last.Load()
		if ns <= old || sc.last.CompareAndSwap(old, ns) {
			break
		}
	}
	for {
		old := sc.first.Load()
		if ns >= old || sc.first.CompareAndSwap(old, ns) {
			return
		}
	}
}

// times returns when vin's first and last records arrived (zero when none
// did).
func (s *seenCars) times(vin string) (first, last time.Time) {
	v, ok := s.m.Load(vin)
	if !ok {
		return time.Time{}, time.Time{}
	}
	sc := v.(*seenCar)
	return time.Unix(0, sc.first.Load()), time.Unix(0, sc.last.Load())
}
