package supervisor

import (
	"sync"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// maxEvents is how many recent events GET /api/events keeps.
const maxEvents = 1000

// eventLog keeps the most recent events (kills, crashes, learned and
// forgotten mappings, reloads, drains, resizes) with increasing ids, for
// GET /api/events?since=ID. Safe for concurrent use.
type eventLog struct {
	mu   sync.Mutex
	buf  []api.Event // a ring of up to maxEvents, oldest at head
	head int
	next uint64
}

// add records e, stamped with the next id and, unless set, the time.
func (el *eventLog) add(e api.Event) {
	el.mu.Lock()
	defer el.mu.Unlock()
	el.next++
	e.ID = el.next
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(el.buf) < maxEvents {
		el.buf = append(el.buf, e)
		return
	}
	el.buf[el.head] = e
	el.head = (el.head + 1) % maxEvents
}

// since returns the events with an id above id, oldest first.
func (el *eventLog) since(id uint64) []api.Event {
	el.mu.Lock()
	defer el.mu.Unlock()
	out := []api.Event{}
	for i := range el.buf {
		if e := el.buf[(el.head+i)%len(el.buf)]; e.ID > id {
			out = append(out, e)
		}
	}
	return out
}
