package ingest

// Stages are the steps of a record's path after the vehicle listener,
// in delivery order: each wraps the steps after it, hands the record on
// and acts once they have succeeded (or passes the record through).
type Stages []func(next Sink) Sink

// To joins the stages, ending in last: the first stage is the sink the
// vehicle listener hands its records to.
func (s Stages) To(last Sink) Sink {
	for i := len(s) - 1; i >= 0; i-- {
		last = s[i](last)
	}
	return last
}
