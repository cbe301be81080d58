// Package simulate plays Tesla vehicles against a fleet-telemetry server,
// so that fleet2mqtt can be tried, developed against and measured without a
// car in reach.
//
// A [Car] connects exactly as a real vehicle does: a WebSocket over TLS with
// a client certificate, the X-TXID, X-Network-Interface and Version upgrade
// headers, binary frames holding a FlatBuffers envelope around a protobuf
// payload, one acknowledgement per record matched by its txid. Records the
// server has not acknowledged are kept and sent again, marked as resends,
// after a reconnect or when their acknowledgement is overdue (the behaviour
// of delivery_policy "latest"); connections that fail are retried with
// backoff; pings are answered.
//
// [Play] drives a Car through a scenario (a drive along a route, a charging
// session, parking and falling asleep, alerts and errors, or a mix of all)
// whose values respect each signal's kind and unit from the telemetry
// catalog, optionally sent as strings as older firmware does. Scenarios are
// deterministic for a seed and can run faster than real time.
//
// [RunLoad] is the load driver of the benchmarks: many cars, a window of
// records in flight per car, pre-built frames, an MQTT subscriber counting
// what the server publishes, acknowledgement latency percentiles and the
// server's CPU time and memory read from /proc. It needs nothing from the
// server but its address and the certificates, so it measures any
// fleet-telemetry-compatible server the same way.
package simulate
