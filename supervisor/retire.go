package supervisor

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/supervisor/lane"
)

// retiring is the set of lanes reloads removed and that have not stopped
// yet. A request that was routed to such a lane before the reload still
// runs there, whole: each lane has a retirer that stops it once its
// queue and its in-flight requests are done (bounded by its
// request_timeout and queue_timeout), woken by the end of each of its
// requests (ended, from the front's Ended hook). Shutdown takes the lanes still
// waiting and stops them with the others, and waits for those already
// stopping.
type retiring struct {
	log hclog.Logger
	n   atomic.Int32 // len(waiting), read per request without the lock

	mu      sync.Mutex
	waiting map[*lane.Lane]chan struct{} // lane → its retirer's wake-up
	closed  bool                         // taken by shutdown: no more waiting
	halt    chan struct{}                // closed by take: retirers stop waiting

	ctx    context.Context // every retirer's Stop; cancelled by kill
	cancel context.CancelFunc
	wg     sync.WaitGroup // retirers
}

func (r *retiring) init(log hclog.Logger) {
	r.log = log
	r.waiting = map[*lane.Lane]chan struct{}{}
	r.halt = make(chan struct{})
	r.ctx, r.cancel = context.WithCancel(context.Background())
}

// add retires l, which a reload has just removed from the state.
func (r *retiring) add(l *lane.Lane) {
	wake := make(chan struct{}, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wg.Add(1)
	if r.closed { // shutting down: nothing to wait for
		go func() { defer r.wg.Done(); l.Stop(r.ctx, true) }()
		return
	}
	r.waiting[l] = wake
	r.n.Add(1)
	go r.retire(l, wake)
}

// ended is the front's news that a request of l left it.
func (r *retiring) ended(l *lane.Lane) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	wake := r.waiting[l]
	r.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// retire waits until l is idle, then stops it, unless shutdown took it
// first.
func (r *retiring) retire(l *lane.Lane, wake <-chan struct{}) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, l.RequestTimeout()+l.Config().QueueTimeout)
	defer cancel()
	for busy := true; busy; {
		if st := l.Status(); st.Queued == 0 && st.Inflight == 0 {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			busy = false
		case <-r.halt:
			busy = false
		}
	}
	r.mu.Lock()
	_, mine := r.waiting[l]
	delete(r.waiting, l)
	r.n.Store(int32(len(r.waiting)))
	r.mu.Unlock()
	if !mine {
		return // shutdown stops it
	}
	l.Stop(ctx, false)
	r.log.Info("lane stopped", "lane", l.Name())
}

// lanes returns the lanes still waiting to stop.
func (r *retiring) lanes() []*lane.Lane {
	if r.n.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*lane.Lane, 0, len(r.waiting))
	for l := range r.waiting {
		out = append(out, l)
	}
	return out
}

// take ends the waiting: it returns the lanes not yet stopping, for the
// caller to stop, and stops retiring any lane added later at once.
func (r *retiring) take() []*lane.Lane {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	close(r.halt)
	var out []*lane.Lane
	for l := range r.waiting {
		out = append(out, l)
	}
	clear(r.waiting)
	r.n.Store(0)
	return out
}

// kill makes the lanes still stopping end their workers at once.
func (r *retiring) kill() { r.cancel() }

// wait returns once every retirer has returned; when ctx ends first, it
// kills what is left and waits for that.
func (r *retiring) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.kill()
		<-done
	}
}
