package main

import (
	"fmt"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/bridge/embedded"
)

// persister is a broker that keeps retained messages on disk: the embedded
// one.
type persister interface {
	Persistence() embedded.PersistStatus
	RetainedRefused() int64
}

// retainedSaveFailing reports a broker that cannot save its retained
// messages now: /healthz says degraded.
func (a *app) retainedSaveFailing() bool {
	p, ok := a.broker.(persister)
	return ok && p.Persistence().Failing
}

// finalSaveError reports a broker that could not save its retained
// messages when it stopped: changes since the fault are lost, and the
// process must say so with its exit status.
func (a *app) finalSaveError() error {
	if p, ok := a.broker.(persister); ok {
		if st := p.Persistence(); st.Failing {
			return fmt.Errorf("retained MQTT messages not saved at shutdown (failing since %s): %s",
				st.FailingSince.Format(time.RFC3339), st.LastError)
		}
	}
	return nil
}
