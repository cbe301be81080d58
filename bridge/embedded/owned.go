package embedded

import (
	"slices"
	"sync/atomic"
)

// ownedTopics are topics outside the protected prefixes that only the
// bridge writes, each kind recognised by a function: Home Assistant's
// discovery configs of the bridge's cars, for example, among the configs
// of other devices that everyone may write. It is safe for concurrent use.
type ownedTopics struct {
	match atomic.Pointer[[]func(topic string) bool]
}

// add reserves the topics for which match reports true.
func (o *ownedTopics) add(match func(topic string) bool) {
	for {
		old := o.match.Load()
		var list []func(string) bool
		if old != nil {
			list = slices.Clone(*old)
		}
		list = append(list, match)
		if o.match.CompareAndSwap(old, &list) {
			return
		}
	}
}

// owns reports whether only the bridge may write topic.
func (o *ownedTopics) owns(topic string) bool {
	if list := o.match.Load(); list != nil {
		for _, m := range *list {
			if m(topic) {
				return true
			}
		}
	}
	return false
}

// ProtectTopics reserves for the bridge the topics for which match reports
// true, such as the Home Assistant discovery configs of its cars: clients
// may not publish on them (nor leave a last will there) from then on. The
// ACL for them is the one of the vehicle topics. match must be fast and
// safe for concurrent use; call ProtectTopics before Start to leave no gap.
func (b *Broker) ProtectTopics(match func(topic string) bool) { b.guard.owned.add(match) }
