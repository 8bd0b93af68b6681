package lane

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
)

// idleLoop stops workers above min_workers that have been idle for
// idle_timeout, one check every quarter of it (between 50 ms and 5 s).
func (l *Lane) idleLoop() {
	for {
		l.mu.Lock()
		every := min(max(l.cfg.IdleTimeout/4, 50*time.Millisecond), 5*time.Second)
		l.mu.Unlock()
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(every):
		}
		l.mu.Lock()
		l.shrinkIdleLocked(time.Now())
		l.mu.Unlock()
	}
}

// shrinkIdleLocked retires ready workers idle for idle_timeout while more
// than min_workers are active, the longest idle first.
func (l *Lane) shrinkIdleLocked(now time.Time) {
	if l.stopping || l.cfg.IdleTimeout <= 0 {
		return
	}
	active := l.activeLocked()
	if active <= l.cfg.MinWorkers {
		return
	}
	idle := make([]*Worker, 0, len(l.workers))
	for _, w := range l.workers {
		if w.state == Ready && w.inflight == 0 && w.replacement == nil && now.Sub(w.idleSince) >= l.cfg.IdleTimeout {
			idle = append(idle, w)
		}
	}
	slices.SortFunc(idle, func(a, b *Worker) int { return a.idleSince.Compare(b.idleSince) })
	for _, w := range idle {
		if active <= l.cfg.MinWorkers {
			break
		}
		l.log.Debug("shrinking: worker idle", "pid", w.pid, "idle", logging.Dur(now.Sub(w.idleSince).Round(time.Millisecond)),
			"active", active, "min_workers", l.cfg.MinWorkers)
		l.retireLocked(w, "idle_timeout")
		active--
	}
}

// Resize sets min_workers and max_workers (nil keeps a value). Growing
// starts workers at once; shrinking below the active count retires idle
// workers first, then busy ones, which finish what they run: nothing in
// flight is cut. A refused resize changes nothing.
func (l *Lane) Resize(minW, maxW *int) (api.ResizeResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lo, hi := l.cfg.MinWorkers, l.cfg.MaxWorkers
	if minW != nil {
		lo = *minW
	}
	if maxW != nil {
		hi = *maxW
	}
	if minW != nil && maxW == nil && hi < lo {
		hi = lo // a larger min carries max with it
	}
	if maxW != nil && minW == nil && lo > hi {
		lo = hi // a smaller max carries min with it
	}
	floor := 0
	if l.name == config.DefaultLaneName {
		floor = 1
	}
	switch {
	case l.stopping:
		return api.ResizeResult{}, api.Conflict("lane %s is stopping", l.name)
	case hi < 1: // before min: a max of 0 carries min with it, and is the mistake
		return api.ResizeResult{}, api.BadRequest("max_workers = %d: must be at least 1", hi)
	case lo < floor:
		return api.ResizeResult{}, api.BadRequest("min_workers = %d: the %s lane needs at least %d", lo, l.name, floor)
	case lo > hi:
		return api.ResizeResult{}, api.BadRequest("min_workers = %d is more than max_workers = %d", lo, hi)
	case hi > maxWorkersCap:
		return api.ResizeResult{}, api.BadRequest("max_workers = %d is more than lanes allows (%d)", hi, maxWorkersCap)
	}
	if lo != l.cfg.MinWorkers || hi != l.cfg.MaxWorkers {
		l.log.Info("resizing", "min_workers", fmt.Sprintf("%d -> %d", l.cfg.MinWorkers, lo), "max_workers", fmt.Sprintf("%d -> %d", l.cfg.MaxWorkers, hi))
	}
	if lo != l.cfg.MinWorkers || hi != l.cfg.MaxWorkers {
		l.event(api.Event{Kind: api.EventResize, Detail: fmt.Sprintf("%d..%d -> %d..%d", l.cfg.MinWorkers, l.cfg.MaxWorkers, lo, hi)})
	}
	l.cfg.MinWorkers, l.cfg.MaxWorkers = lo, hi
	l.fitLocked()
	return api.ResizeResult{Lane: l.name, MinWorkers: lo, MaxWorkers: hi}, nil
}

// ShrinkOne retires one worker now if more than min_workers are active:
// an idle one first (the longest idle), else the least busy, which
// finishes what it runs. It is SIGTTOU's "one fewer worker, now", as
// gunicorn's TTOU removes one at once rather than waiting for idle_timeout.
func (l *Lane) ShrinkOne() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping || l.activeLocked() <= l.cfg.MinWorkers {
		return false
	}
	var pick *Worker
	for _, w := range l.workers {
		if w.state != Ready || w.replacement != nil {
			continue
		}
		if pick == nil || w.inflight < pick.inflight ||
			(w.inflight == pick.inflight && w.inflight == 0 && w.idleSince.Before(pick.idleSince)) {
			pick = w
		}
	}
	if pick == nil {
		return false
	}
	l.retireLocked(pick, "SIGTTOU")
	return true
}

// maxWorkersCap bounds max_workers through the API: a typo must not fork a
// thousand processes.
const maxWorkersCap = 256

// fitLocked brings the number of active workers within min..max: it spawns
// up to min, and retires workers above max, idle ones first.
func (l *Lane) fitLocked() {
	if l.direct != nil {
		l.fitDirectLocked()
		return
	}
	l.reconcileLocked()
	active := l.activeLocked()
	if active <= l.cfg.MaxWorkers {
		return
	}
	cands := make([]*Worker, 0, len(l.workers))
	for _, w := range l.workers {
		if w.state == Starting || w.state == Ready {
			cands = append(cands, w)
		}
	}
	// Starting first (they serve nothing yet), then ready by load.
	slices.SortStableFunc(cands, func(a, b *Worker) int {
		if (a.state == Starting) != (b.state == Starting) {
			if a.state == Starting {
				return -1
			}
			return 1
		}
		return a.inflight - b.inflight
	})
	for _, w := range cands[:active-l.cfg.MaxWorkers] {
		if w.state == Starting {
			w.state = Stopping
			w.proc.Kill()
			continue
		}
		l.retireLocked(w, "resize")
	}
}

// Drain replaces every worker of the lane, one at a time: a replacement is
// started and ready before the worker it replaces leaves rotation, and the
// old worker finishes its in-flight requests (a request past
// request_timeout is handled as a hung one) and exits. Drain returns at
// once; Status shows the lane as draining until it is done.
func (l *Lane) Drain(why string) (api.DrainResult, error) {
	if l.direct != nil {
		return l.drainDirect(why)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return api.DrainResult{}, api.Conflict("lane %s is stopping", l.name)
	}
	old := make([]*Worker, 0, len(l.workers))
	for _, w := range l.workers {
		if w.state == Ready || w.state == Starting {
			old = append(old, w)
		}
	}
	l.drains.Add(1)
	l.draining++
	l.notifyLocked()
	l.log.Info("draining", "workers", len(old), "reason", why)
	l.event(api.Event{Kind: api.EventDrain, Detail: fmt.Sprintf("started (%s): %d workers", why, len(old))})
	l.goCounted(func() { l.drain(old, why) })
	return api.DrainResult{Lane: l.name, Workers: len(old), Started: true}, nil
}

// drainGiveUp is how many replacements may fail (to start, or by dying
// within their probation) before a drain stops, keeping the old workers.
const drainGiveUp = 2

// drain replaces old one by one. An old worker leaves rotation only once
// its replacement has stayed up for the policy's probation. A replacement
// that fails to start or dies within its probation is tried again after
// the lane's crash back-off; drainGiveUp of them end the drain, keeping
// the remaining old workers in rotation, and the lane's last_drain says
// so. Only this drain's own failures count: a lane whose last drain gave
// up (a broken worker binary) must drain again once the binary is fixed,
// although its crash count, which only a stable new worker resets, is
// still high.
func (l *Lane) drain(old []*Worker, why string) {
	replaced, fails := 0, 0
	stopped := ""
	defer func() {
		l.mu.Lock()
		l.draining--
		if stopped == "" {
			l.lastDrain = fmt.Sprintf("done (%s): %d of %d workers replaced", why, replaced, len(old))
		} else {
			l.lastDrain = stopped
		}
		l.event(api.Event{Kind: api.EventDrain, Detail: l.lastDrain})
		l.notifyLocked()
		l.mu.Unlock()
		if stopped == "" {
			l.log.Info("drain done", "reason", why, "replaced", replaced)
		}
	}()
	for _, w := range old {
		var started *Worker // the replacement this drain started for w
		for {
			l.mu.Lock()
			if l.stopping {
				l.mu.Unlock()
				return
			}
			if w.state == Starting { // wait until it is ready or gone
				ch := l.changed
				l.mu.Unlock()
				l.waitChange(ch)
				continue
			}
			if w.state != Ready {
				if started != nil && w.state == Retiring {
					replaced++
				}
				l.mu.Unlock()
				break // replaced, gone, or already out of rotation
			}
			if w.replacement == nil {
				if started != nil { // it died before its probation ended
					started = nil
					if fails++; fails >= drainGiveUp {
						kept := 0
						for _, o := range old {
							if o.state == Ready {
								kept++
							}
						}
						stopped = fmt.Sprintf("stopped (%s): %d replacement workers failed to start or died within %s; %d old workers kept; last: %s",
							why, fails, l.policy.Probation, kept, l.lastExit)
						l.log.Error("drain stopped: replacement workers fail; the old workers keep serving", "reason", why, "failures", fails, "kept", kept, "last", l.lastExit)
						l.mu.Unlock()
						return
					}
				}
				if wait := time.Until(l.crash.Until()); wait > 0 {
					l.mu.Unlock()
					if !l.sleep(wait) {
						return
					}
					continue
				}
				started = l.replaceLocked(w, why)
			}
			ch := l.changed
			l.mu.Unlock()
			l.waitChange(ch)
		}
	}
}

func (l *Lane) waitChange(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-l.ctx.Done():
	}
}

func (l *Lane) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-l.ctx.Done():
		return false
	}
}

// Reconfigure applies a reloaded lane block. Worker settings (command,
// concurrency, max_rss, max_requests, or the environment every worker gets,
// i.e. the app) drain the lane onto new workers; sizes resize it; queue and
// timeout settings apply to the next request. It returns what changed.
func (l *Lane) Reconfigure(cfg config.Lane, env Env) []string {
	l.mu.Lock()
	old := l.cfg
	var changes []string
	workersChanged := !slices.Equal(old.Command, cfg.Command) || old.Concurrency != cfg.Concurrency ||
		!slices.Equal(old.Exec, cfg.Exec) || old.ExecDir != cfg.ExecDir || !slices.Equal(old.ExecEnv, cfg.ExecEnv) || old.ExecSocket != cfg.ExecSocket ||
		old.HealthPath != cfg.HealthPath || old.Ready != cfg.Ready || old.StopSignal != cfg.StopSignal || old.StopTimeout != cfg.StopTimeout ||
		old.MaxRSS != cfg.MaxRSS || old.MaxRequests != cfg.MaxRequests || old.MaxRequestsJitter != cfg.MaxRequestsJitter ||
		!slices.Equal(l.env.WorkerEnv, env.WorkerEnv) || !slices.Equal(l.env.Builtin, env.Builtin) || !slices.Equal(l.env.Shim, env.Shim)
	if old.MinWorkers != cfg.MinWorkers || old.MaxWorkers != cfg.MaxWorkers {
		changes = append(changes, fmt.Sprintf("lane %s: resized %d..%d -> %d..%d", l.name, old.MinWorkers, old.MaxWorkers, cfg.MinWorkers, cfg.MaxWorkers))
	}
	var limits []string
	for _, c := range []struct {
		name     string
		was, now any
	}{
		{"max_queue", old.MaxQueue, cfg.MaxQueue},
		{"queue_timeout", old.QueueTimeout, cfg.QueueTimeout},
		{"request_timeout", old.RequestTimeout, cfg.RequestTimeout},
		{"idle_timeout", old.IdleTimeout, cfg.IdleTimeout},
	} {
		if c.was != c.now {
			limits = append(limits, fmt.Sprintf("%s %v -> %v", c.name, c.was, c.now))
		}
	}
	if len(limits) > 0 {
		changes = append(changes, fmt.Sprintf("lane %s: limits changed: %s", l.name, strings.Join(limits, ", ")))
	}
	if !slices.Equal(old.Map, cfg.Map) {
		changes = append(changes, fmt.Sprintf("lane %s: static mappings changed", l.name))
	}
	l.setConfigLocked(cfg, env)
	l.fitLocked()
	l.mu.Unlock()
	if workersChanged {
		changes = append(changes, fmt.Sprintf("lane %s: worker settings changed; draining onto new workers", l.name))
		_, _ = l.Drain("reload")
	}
	return changes
}

// Draining says a drain is running.
func (l *Lane) Draining() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.draining > 0 }

// Goroutines returns how many goroutines the lane runs now.
func (l *Lane) Goroutines() int64 { return l.goroutines.Load() }
