package lane

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/shared/upstream"
)

// A direct lane (app.direct) has no worker processes: the front proxies
// its requests to the upstream itself, one hop, as nginx and HAProxy do.
// Its isolation is what the lane already gives in front of any worker —
// slots, queue, queue_timeout, the hard timeout — so the lane keeps all of
// that and swaps the processes for one slot holder: a Worker with no
// process whose slots are max_workers × concurrency and whose data client
// is a pool of upstream connections (package upstream: TCP or TLS, reused
// only when clean). Acquire, the queue and Release work on it unchanged.
//
// What a process gave and a direct lane cannot: a hard timeout closes the
// request's upstream connection (the client's DoDeadline does) and kills
// nothing — killing a worker in upstream mode never freed anything in the
// app anyway; an app's own hangs are contained by exec workers. A failed
// request does not take the slot holder out of rotation (there is nothing
// to health-check). Resize changes the slots; drain has nothing to
// replace and succeeds at once.

// Direct says the front proxies the lane's requests to the upstream
// itself: Acquire hands out slots of a Worker with no process.
func (l *Lane) Direct() bool { return l.direct != nil }

// newDirectLocked makes the slot holder of a direct lane; startDirect puts
// it in rotation.
func (l *Lane) newDirectLocked() {
	l.direct = &Worker{lane: l, state: Starting, started: time.Now(), conc: l.cfg.Slots()}
}

// startDirect makes the upstream client and puts the slot holder in
// rotation.
func (l *Lane) startDirect() error {
	t, err := upstream.Parse(l.env.Upstream)
	if err != nil {
		return fmt.Errorf("lane %s: %w", l.name, err)
	}
	// Admission caps requests at the lane's slots, whatever a resize sets
	// them to; the client adds no limit (nor a wait) of its own.
	hc := upstream.NewClient(t, math.MaxInt32)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.direct
	w.hc = hc
	w.state, w.ready, w.idleSince = Ready, time.Now(), time.Now()
	l.workers = append(l.workers, w)
	l.started = true
	l.log.Info("direct: proxying to the upstream from the front", "upstream", t.Addr, "slots", w.conc)
	l.notifyLocked()
	return nil
}

// fitDirectLocked applies the lane's size to its slots (a resize, a
// reload) and hands new ones to waiting requests. Fewer slots take
// effect as requests finish: nothing running is cut.
func (l *Lane) fitDirectLocked() {
	w := l.direct
	w.conc = l.cfg.Slots()
	if w.state == Ready {
		l.feedLocked(w)
	}
}

// timeoutDirect logs a direct request that passed request_timeout: its
// upstream connection is closed already, and nothing is killed.
func (l *Lane) timeoutDirect(o *Outcome) {
	l.log.Error("request timeout; upstream connection closed",
		"method", string(o.Method), "path", string(o.Path),
		"queue", logging.Dur(o.Queue.Round(time.Microsecond)), "run", logging.Dur(o.Run.Round(time.Microsecond)),
		"limit", logging.Dur(l.RequestTimeout()))
}

// drainDirect is a drain of a direct lane: no process to replace, so it
// is done at once (and says so).
func (l *Lane) drainDirect(why string) (api.DrainResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return api.DrainResult{}, api.Conflict("lane %s is stopping", l.name)
	}
	l.drains.Add(1)
	l.lastDrain = fmt.Sprintf("done (%s): direct lane, no worker processes to replace", why)
	l.event(api.Event{Kind: api.EventDrain, Detail: l.lastDrain})
	return api.DrainResult{Lane: l.name, Workers: 0, Started: true}, nil
}

// stopDirect stops a direct lane: queued requests are refused, running
// ones finish (up to ctx; not waited for with immediate), and the idle
// upstream connections are closed.
func (l *Lane) stopDirect(ctx context.Context, immediate bool) {
	l.mu.Lock()
	l.stopping = true
	for _, wt := range l.queue {
		wt.ch <- nil
	}
	l.queue = nil
	w := l.direct
	w.state = Stopping
	l.notifyLocked()
	l.mu.Unlock()
	for !immediate {
		l.mu.Lock()
		n, ch := w.inflight, l.changed
		l.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch: // Release notifies a stopping lane
		case <-ctx.Done():
			immediate = true
		}
	}
	if w.hc != nil {
		w.hc.CloseIdleConnections()
	}
	l.mu.Lock()
	w.state = Dead
	l.removeLocked(w)
	l.notifyLocked()
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}

// statusDirect fills in what Status shows of a direct lane: slots instead
// of worker processes.
func (l *Lane) statusDirectLocked(st *api.Lane) {
	st.Direct = true
	st.Slots = l.direct.conc
}
