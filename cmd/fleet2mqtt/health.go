package main

import "github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"

// persistence is how the embedded broker keeps retained messages on disk
// (/healthz says degraded while its saves fail, and a failed final save
// is the process's exit status); zero for an external broker.
func (a *app) persistence() embedded.PersistStatus {
	if b, ok := a.broker.(*embedded.Broker); ok {
		return b.Persistence()
	}
	return embedded.PersistStatus{}
}

// degraded is what /healthz reports: something fleet2mqtt keeps on disk
// cannot be saved (the broker's retained messages, the cars' values or
// their derived state), so that a restart now would lose it.
func (a *app) degraded() bool {
	return a.persistence().Failing || a.activity != nil && a.activity.SaveFailing()
}
