// Package announce runs Home Assistant discovery next to the bridge. It
// learns from the records what each car sends (which signals, its display
// name, its firmware version), publishes package discovery's device config
// for it, and keeps that config up to date: when a car is first seen, when
// new signals, a new name or a new version appear, when the streaming
// configuration changes, and when Home Assistant restarts.
//
//	ann, err := announce.New(cfg, discovery.Bridge{Prefix: "tesla", Availability: "tesla/bridge/state"}, broker, broker, br,
//		announce.WithStateFile(filepath.Join(dataDir, announce.StateFile)))
//	go ann.Run(ctx)                          // until ctx ends
//	sink := ann.Tee(br)                      // records go to the bridge, then to ann
//
// # The hot path
//
// Observe (called by Tee once the bridge has published a record) only
// sets bits: one bit per catalog signal per car, an atomic load per datum
// once the signal is known, and a string comparison for the name and the
// version. It never publishes, blocks or allocates for a car and signals
// it has seen before; what is new wakes the announcer's goroutine.
//
// # When configs are published
//
// Changes are debounced: a car's config is published once its news has
// been quiet for the debounce (2 s by default), or at the latest ten
// debounces after the first unannounced news, so that a car that sends
// its signals over a few records gets one config, not one per record. A
// car seen for the first time is debounced the same way, so that its
// first config carries the signals and the display name of its first
// records (Home Assistant makes entity ids from the first config it sees).
// After a car's first config the announcer also publishes its
// active_alerts topic (see bridge.Bridge.PublishActiveAlerts), so that the
// alerts entity has a value. A config identical to the one last published
// is not published again.
//
// Signals that a car no longer announces (removed from its streaming
// configuration by SetStreaming, or newly excluded in the configuration)
// are removed from Home Assistant with discovery.RemoveMessages. To know
// them the announcer remembers what it announced; across restarts it
// keeps that, with the signals seen, the name and the version of every
// car, in a small JSON state file in the data directory (written
// atomically, after every change). At start it announces every car of the
// state file again (after one debounce), so that configuration changes
// (prefix, instance, include and exclude lists) take effect, and removes
// the config at a discovery topic that is no longer the car's.
//
// # Configs it did not publish: replicas
//
// The announcer subscribes to the discovery topic of every car it knows
// and reads every config there that it did not publish itself: the
// retained one of an earlier run (all it knows of that run without a
// state file), or one that another replica of the installation published
// for a car that streams to it, or streamed to it before. Such a config
// is merged into what the announcer knows of the car (see
// discovery.ParseAnnouncement): its signals count as seen, its components
// as announced, components it sends bare ({"p":…}, a removal) forget
// their signals, and its name and software version are taken over. So
// a replica never removes an entity another replica announced (it
// announces it too), removals made on one replica are not undone by
// another, and when the configs of two replicas differ, the one that knows
// more announces the union, after which both render the same bytes: the
// configs converge instead of taking turns. Only the configuration
// (include, exclude, instance) decides what is removed, which is why
// replicas must share it.
//
// # Home Assistant's birth message
//
// The announcer subscribes to Home Assistant's status topic. On online it
// waits discovery.RepublishDelay (a second online restarts the wait),
// publishes the config of every known car, and then asks the bridge to
// publish every car's current values again (bridge.Bridge.Republish).
//
// # Removing a car
//
// The announcer subscribes to the discovery topic of each car it knows.
// When someone empties it (`fleet2mqtt discovery remove <VIN>`, or Home
// Assistant when the device is deleted there), the announcer forgets the
// car, so that it does not come back with the next birth message. A car
// that still streams is announced again with its next records.
package announce
