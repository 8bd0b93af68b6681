package lane

import (
	"sync"
	"time"
)

// waiter is one request waiting in a lane's queue. Waiters and their timers
// are pooled: the queue is on the hot path of a saturated lane.
type waiter struct {
	ch    chan *Worker // the worker handed over, or nil when the lane stops
	timer *time.Timer
}

var waiterPool = sync.Pool{New: func() any {
	return &waiter{ch: make(chan *Worker, 1)}
}}

func acquireWaiter() *waiter { return waiterPool.Get().(*waiter) }

func releaseWaiter(wt *waiter) { waiterPool.Put(wt) }

// wait blocks until wt is handed a worker, the lane stops, or timeout passes.
func (wt *waiter) wait(l *Lane, timeout time.Duration) (*Worker, error) {
	if wt.timer == nil {
		wt.timer = time.NewTimer(timeout)
	} else {
		wt.timer.Reset(timeout)
	}
	select {
	case w := <-wt.ch:
		wt.timer.Stop()
		if w == nil {
			return nil, ErrStopped
		}
		return w, nil
	case <-wt.timer.C:
	}
	l.mu.Lock()
	removed := l.dequeueLocked(wt)
	l.mu.Unlock()
	if removed {
		return nil, ErrQueueTimeout
	}
	// Handed a worker (or the stop) while the timer fired: take it, so the
	// slot is not lost.
	if w := <-wt.ch; w != nil {
		return w, nil
	}
	return nil, ErrStopped
}
