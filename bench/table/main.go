// Command table reads the JSON lines of `fleet2mqtt simulate --load`, each
// labelled with its scenario, and prints a Markdown table of the medians
// per scenario. bench/run uses it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

type result struct {
	Label         string  `json:"label"`
	Complete      bool    `json:"complete"`
	Records       int64   `json:"records"`
	RecordsPerSec float64 `json:"records_per_s"`
	AckP50Ms      float64 `json:"ack_p50_ms"`
	AckP99Ms      float64 `json:"ack_p99_ms"`
	AckMaxMs      float64 `json:"ack_max_ms"`
	DriverCPU     float64 `json:"driver_cpu_s_per_100k_records"`
	MQTT          *struct {
		MessagesSec    float64 `json:"messages_per_s"`
		PerRecord      float64 `json:"messages_per_record"`
		LastAfterAckMs float64 `json:"last_signal_after_last_ack_ms"`
		Delivery       *struct {
			Ratio float64 `json:"delivered_ratio"`
		} `json:"delivery"`
	} `json:"mqtt"`
	Broker *struct {
		CPUSecsPer100k float64 `json:"cpu_s_per_100k_records"`
	} `json:"broker"`
	Server *struct {
		CPUSecsPer100k float64 `json:"cpu_s_per_100k_records"`
		RSSIdleMB      float64 `json:"rss_idle_mb"`
		PeakRSSMB      float64 `json:"peak_rss_mb"`
		KBPerConn      float64 `json:"kb_per_connection"`
	} `json:"server"`
}

func main() {
	byLabel := map[string][]result{}
	var order []string
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var r result
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, "table: skipping a line that is not a result:", err)
			continue
		}
		if _, ok := byLabel[r.Label]; !ok {
			order = append(order, r.Label)
		}
		byLabel[r.Label] = append(byLabel[r.Label], r)
	}
	fmt.Println("| scenario | runs (complete) | records/s acked | delivered ÷ expected (median, lowest) | last signal after last ack, ms | MQTT msgs/s | server CPU-s per 100k records | broker CPU-s per 100k | driver CPU-s per 100k | ack p50 / p99 / max ms | RSS idle → peak MB | KB per car |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, label := range order {
		rs := byLabel[label]
		m := func(f func(result) float64) float64 {
			v := make([]float64, 0, len(rs))
			for _, r := range rs {
				v = append(v, f(r))
			}
			slices.Sort(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		mqtt := func(f func(r result) float64) func(result) float64 {
			return func(r result) float64 {
				if r.MQTT == nil {
					return 0
				}
				return f(r)
			}
		}
		srv := func(f func(r result) float64) func(result) float64 {
			return func(r result) float64 {
				if r.Server == nil {
					return 0
				}
				return f(r)
			}
		}
		complete, lowest, delivered := 0, 1.0, "—"
		for _, r := range rs {
			if r.Complete {
				complete++
			}
			if r.MQTT != nil && r.MQTT.Delivery != nil {
				lowest = min(lowest, r.MQTT.Delivery.Ratio)
				delivered = ""
			}
		}
		if delivered == "" {
			delivered = fmt.Sprintf("%.1f%%, %.1f%%", 100*m(mqtt(func(r result) float64 {
				if r.MQTT.Delivery == nil {
					return 0
				}
				return r.MQTT.Delivery.Ratio
			})), 100*lowest)
		}
		trail := "—"
		if delivered != "—" {
			trail = fmt.Sprintf("%.1f", m(mqtt(func(r result) float64 { return r.MQTT.LastAfterAckMs })))
		}
		broker := "—"
		if rs[0].Broker != nil {
			broker = fmt.Sprintf("%.2f", m(func(r result) float64 {
				if r.Broker == nil {
					return 0
				}
				return r.Broker.CPUSecsPer100k
			}))
		}
		fmt.Printf("| %s | %d (%d) | %.0f | %s | %s | %.0f | %.2f | %s | %.2f | %.1f / %.1f / %.1f | %.1f → %.1f | %.0f |\n", label, len(rs), complete,
			m(func(r result) float64 { return r.RecordsPerSec }), delivered, trail,
			m(mqtt(func(r result) float64 { return r.MQTT.MessagesSec })),
			m(srv(func(r result) float64 { return r.Server.CPUSecsPer100k })), broker,
			m(func(r result) float64 { return r.DriverCPU }),
			m(func(r result) float64 { return r.AckP50Ms }), m(func(r result) float64 { return r.AckP99Ms }), m(func(r result) float64 { return r.AckMaxMs }),
			m(srv(func(r result) float64 { return r.Server.RSSIdleMB })), m(srv(func(r result) float64 { return r.Server.PeakRSSMB })),
			m(srv(func(r result) float64 { return r.Server.KBPerConn })))
	}
}
