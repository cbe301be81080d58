package telemetry

import (
	"slices"
	"strconv"
)

// AppendJSONMembers appends r as the members of a JSON object, without
// its braces, so that a caller can add members of its own around them:
//
//	"topic":"V","txid":"…","vin":"…","created_at":"2026-01-01T00:00:00Z","values":{"Soc":79.125,"Gear":"D"}
//
// "resend":true follows created_at when the car sends the record again.
// The last member depends on the topic: "values" for V (in the order the
// car sent them; a field sent twice keeps its first place and its last
// value; each as Value.AppendJSON writes it), "alerts", "errors" (tags
// sorted by name) or "connectivity". Times are written as AppendJSONTime
// writes them.
func (r *Record) AppendJSONMembers(dst []byte) []byte {
	dst = append(dst, `"topic":`...)
	dst = AppendJSONString(dst, string(r.Topic))
	dst = append(dst, `,"txid":`...)
	dst = AppendJSONString(dst, r.TxID)
	dst = append(dst, `,"vin":`...)
	dst = AppendJSONString(dst, r.VIN)
	dst = append(dst, `,"created_at":`...)
	dst = AppendJSONTime(dst, r.CreatedAt)
	if r.Resend {
		dst = append(dst, `,"resend":true`...)
	}
	switch r.Topic {
	case TopicV:
		dst = appendValuesJSON(dst, r.Data)
	case TopicAlerts:
		dst = appendAlertsJSON(dst, r.Alerts)
	case TopicErrors:
		dst = appendErrorsJSON(dst, r.Errors)
	case TopicConnectivity:
		dst = appendConnectivityJSON(dst, r.Connectivity)
	}
	return dst
}

func appendValuesJSON(dst []byte, data []Datum) []byte {
	dst = append(dst, `,"values":{`...)
	first := true
	for i, d := range data {
		if slices.ContainsFunc(data[:i], func(e Datum) bool { return e.Field == d.Field }) {
			continue // written at its first place
		}
		for _, later := range data[i+1:] {
			if later.Field == d.Field {
				d = later
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendJSONString(dst, d.Field.String())
		dst = append(dst, ':')
		dst = d.Value.AppendJSON(dst)
	}
	return append(dst, '}')
}

func appendAlertsJSON(dst []byte, alerts []Alert) []byte {
	dst = append(dst, `,"alerts":[`...)
	for i, a := range alerts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = AppendJSONString(dst, a.Name)
		dst = append(dst, `,"audiences":[`...)
		for j, au := range a.Audiences {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, au.String())
		}
		dst = append(dst, `],"started_at":`...)
		dst = AppendJSONTime(dst, a.StartedAt)
		dst = append(dst, `,"ended_at":`...)
		dst = AppendJSONTime(dst, a.EndedAt)
		dst = append(dst, `,"active":`...)
		dst = strconv.AppendBool(dst, a.Active())
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendErrorsJSON(dst []byte, errs []VehicleError) []byte {
	dst = append(dst, `,"errors":[`...)
	for i, e := range errs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = AppendJSONString(dst, e.Name)
		dst = append(dst, `,"created_at":`...)
		dst = AppendJSONTime(dst, e.CreatedAt)
		dst = append(dst, `,"tags":{`...)
		keys := make([]string, 0, len(e.Tags))
		for k := range e.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for j, k := range keys {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = AppendJSONString(dst, e.Tags[k])
		}
		dst = append(dst, `},"body":`...)
		dst = AppendJSONString(dst, e.Body)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendConnectivityJSON(dst []byte, c Connectivity) []byte {
	dst = append(dst, `,"connectivity":{"connection_id":`...)
	dst = AppendJSONString(dst, c.ConnectionID)
	dst = append(dst, `,"status":`...)
	dst = AppendJSONString(dst, c.Status.String())
	dst = append(dst, `,"network_interface":`...)
	dst = AppendJSONString(dst, c.NetworkInterface)
	dst = append(dst, `,"created_at":`...)
	dst = AppendJSONTime(dst, c.CreatedAt)
	return append(dst, '}')
}
