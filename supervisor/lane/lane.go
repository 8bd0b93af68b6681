// Package lane owns a lane: a pool of worker processes, the bounded
// admission queue in front of it, dispatch to the least-loaded worker, and
// the watchdog side of containment — a worker whose request passed the
// lane's hard timeout leaves rotation and is SIGKILLed and replaced. It
// forks every worker from one locked OS thread (Spawner) so that no worker
// outlives the supervisor.
package lane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

// Errors of admission. The front answers all of them with 503 + Retry-After.
var (
	ErrQueueFull    = errors.New("lanes: queue full")
	ErrQueueTimeout = errors.New("lanes: queue timeout")
	ErrStopped      = errors.New("lanes: lane stopped")
)

// Crash-loop policy: a worker that dies unexpectedly within stableAfter of
// becoming ready counts as a crash; the first crash is replaced at once,
// later ones after backoffBase·2^(n-2), at most backoffMax.
const (
	stableAfter    = 10 * time.Second
	backoffBase    = 100 * time.Millisecond
	backoffMax     = 30 * time.Second
	crashLoopAt    = 3
	healthInterval = 5 * time.Second
	retireTimeout  = 10 * time.Second
	exitGrace      = time.Second // for a worker that failed a check to be reaped
)

// Env is what every lane of a supervisor shares.
type Env struct {
	Spawner   *Spawner
	RunDir    string       // private 0700 directory for sockets
	Builtin   []string     // argv of the built-in worker (lanesd's own worker subcommand)
	WorkerEnv []string     // extra environment for every worker
	Log       hclog.Logger // the supervisor's logger; the lane names its own
}

// Lane is one lane. All methods are safe for concurrent use.
type Lane struct {
	name string
	cfg  config.Lane
	env  Env
	log  hclog.Logger
	argv []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	workers   []*Worker
	queue     []*waiter
	seq       int
	inflight  int
	crashes   int       // consecutive
	lastCrash time.Time // when crashes last grew
	backoff   time.Time
	lastExit  string
	lastErr   string
	stopping  bool
	retry     *time.Timer
	changed   chan struct{} // closed and replaced on every state change

	served, rejected, timeouts, killed, respawns atomic.Uint64

	lat latency
}

// New returns a lane; Start launches its workers.
func New(cfg config.Lane, env Env) *Lane {
	argv := cfg.Command
	if len(argv) == 0 {
		argv = env.Builtin
	}
	l := &Lane{
		name:    cfg.Name,
		cfg:     cfg,
		env:     env,
		argv:    argv,
		log:     env.Log.Named("lane").With("lane", cfg.Name),
		changed: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Name returns the lane's name.
func (l *Lane) Name() string { return l.name }

// RequestTimeout returns the lane's hard timeout. The front reads it for
// every request, so it returns the one field rather than a copy of the
// whole config.
func (l *Lane) RequestTimeout() time.Duration { return l.cfg.RequestTimeout }

// Start launches min_workers workers and waits until they are ready. If a
// worker cannot start at all (a wrong command, a worker that does not
// handshake), Start stops what it started and returns the error.
func (l *Lane) Start(ctx context.Context) error {
	l.mu.Lock()
	for range l.cfg.MinWorkers {
		l.spawnLocked(false)
	}
	l.mu.Unlock()
	go l.healthLoop()
	for {
		l.mu.Lock()
		ready, starting := 0, 0
		for _, w := range l.workers {
			switch w.state {
			case Ready:
				ready++
			case Starting:
				starting++
			}
		}
		lastErr, ch := l.lastErr, l.changed
		l.mu.Unlock()
		if ready >= l.cfg.MinWorkers {
			return nil
		}
		if lastErr != "" && starting == 0 {
			l.Stop(context.Background(), true)
			return fmt.Errorf("lane %s: %s", l.name, lastErr)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			l.Stop(context.Background(), true)
			return fmt.Errorf("lane %s: workers not ready: %w", l.name, ctx.Err())
		}
	}
}

// notifyLocked wakes everything waiting for a state change.
func (l *Lane) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// spawnLocked adds a starting worker and launches it in the background;
// respawn says it replaces one.
func (l *Lane) spawnLocked(respawn bool) {
	l.seq++
	if respawn {
		l.respawns.Add(1)
	}
	w := &Worker{lane: l, seq: l.seq, state: Starting, started: time.Now()}
	l.workers = append(l.workers, w)
	l.wg.Add(1)
	go l.run(w)
}

func (l *Lane) spec() spec {
	return spec{
		command: l.argv,
		env: append([]string{
			shared.EnvLane + "=" + l.name,
			shared.EnvParentPID + "=" + strconv.Itoa(os.Getpid()),
		}, l.env.WorkerEnv...),
		runDir: l.env.RunDir,
		log:    l.log.Named("worker"),
		sp:     l.env.Spawner,
		conc:   l.cfg.Concurrency,
	}
}

// run starts w, puts it in rotation, and handles its exit.
func (l *Lane) run(w *Worker) {
	defer l.wg.Done()
	err := startWorker(l.ctx, l.spec(), w)
	var size int64
	if err == nil {
		size, _ = rss(w.pid) // shown from the start, not from the first health check
	}
	l.mu.Lock()
	w.rss = size
	if err != nil {
		l.removeLocked(w)
		w.state = Dead
		l.crashLocked(err.Error())
		l.lastErr = err.Error()
		l.log.Error("worker failed to start", "error", err, "consecutive", l.crashes)
		l.reconcileLocked()
		l.notifyLocked()
		l.mu.Unlock()
		if w.runner != nil {
			<-w.exited()
		}
		return
	}
	if l.stopping {
		w.state = Stopping
		l.mu.Unlock()
		w.hardKill()
	} else {
		w.state = Ready
		l.lastErr = ""
		l.log.Debug("worker ready", "pid", w.pid, "start", w.ready.Sub(w.started))
		l.feedLocked(w)
		l.notifyLocked()
		l.mu.Unlock()
	}

	<-w.exited()

	l.mu.Lock()
	prev := w.state
	w.state = Dead
	l.removeLocked(w)
	if prev == Ready || prev == Starting {
		up := time.Since(w.ready)
		l.log.Warn("worker exited", "pid", w.pid, "status", w.exitErr(), "uptime", up.Round(time.Millisecond), "inflight", w.inflight)
		if up < stableAfter {
			l.crashLocked(w.exitErr())
		} else {
			l.crashes = 0
			l.lastExit = w.exitErr()
		}
	}
	_ = os.Remove(w.sock)
	l.reconcileLocked()
	l.notifyLocked()
	l.mu.Unlock()
}

// crashLocked records an unexpected end and sets the backoff.
func (l *Lane) crashLocked(why string) {
	l.crashes++
	l.lastCrash = time.Now()
	l.lastExit = why
	if l.crashes < 2 {
		return
	}
	d := backoffBase << (l.crashes - 2)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	l.backoff = time.Now().Add(d)
	if l.crashes == crashLoopAt {
		l.log.Error("worker crash loop; backing off", "crashes", l.crashes, "backoff", d, "last", why)
	}
}

// reconcileLocked spawns workers until min_workers are starting or ready,
// unless the lane is backing off from a crash loop.
func (l *Lane) reconcileLocked() {
	if l.stopping {
		return
	}
	active := 0
	for _, w := range l.workers {
		if w.state == Starting || w.state == Ready {
			active++
		}
	}
	need := l.cfg.MinWorkers - active
	if need <= 0 {
		return
	}
	if wait := time.Until(l.backoff); wait > 0 {
		if l.retry == nil {
			l.retry = time.AfterFunc(wait, func() {
				l.mu.Lock()
				l.retry = nil
				l.reconcileLocked()
				l.mu.Unlock()
			})
		}
		return
	}
	for range need {
		l.spawnLocked(true)
	}
}

func (l *Lane) removeLocked(w *Worker) {
	for i, x := range l.workers {
		if x == w {
			l.workers = append(l.workers[:i], l.workers[i+1:]...)
			return
		}
	}
}

// freeLocked says w is in rotation and has a free slot.
func (l *Lane) freeLocked(w *Worker) bool {
	return w.state == Ready && !w.suspect && w.inflight < l.cfg.Concurrency
}

// pickLocked returns the least-loaded ready worker with a free slot.
func (l *Lane) pickLocked() *Worker {
	var best *Worker
	for _, w := range l.workers {
		if !l.freeLocked(w) {
			continue
		}
		if best == nil || w.inflight < best.inflight {
			best = w
			if w.inflight == 0 {
				break
			}
		}
	}
	return best
}

// feedLocked hands w's free slots to waiting requests, oldest first.
func (l *Lane) feedLocked(w *Worker) {
	for len(l.queue) > 0 && l.freeLocked(w) {
		wt := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		w.inflight++
		l.inflight++
		wt.ch <- w
	}
}

// Acquire waits for a slot on a ready worker: at once if one is free, else
// in the lane's queue, bounded by max_queue and queue_timeout. The caller
// must Release the worker.
func (l *Lane) Acquire() (*Worker, error) {
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return nil, ErrStopped
	}
	if len(l.queue) == 0 {
		if w := l.pickLocked(); w != nil {
			w.inflight++
			l.inflight++
			l.mu.Unlock()
			return w, nil
		}
	}
	if len(l.queue) >= l.cfg.MaxQueue {
		l.mu.Unlock()
		l.rejected.Add(1)
		return nil, ErrQueueFull
	}
	wt := acquireWaiter()
	l.queue = append(l.queue, wt)
	l.mu.Unlock()

	w, err := wt.wait(l, l.cfg.QueueTimeout)
	releaseWaiter(wt)
	if err != nil {
		l.rejected.Add(1)
	}
	return w, err
}

// dequeueLocked removes wt from the queue; false if it was already handed a
// worker (or the lane's stop).
func (l *Lane) dequeueLocked(wt *waiter) bool {
	for i, x := range l.queue {
		if x == wt {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			return true
		}
	}
	return false
}

// Release returns w's slot after a request. d is the request's total time,
// for the lane's latency figures.
func (l *Lane) Release(w *Worker, d time.Duration) {
	l.served.Add(1)
	l.lat.add(d)
	l.mu.Lock()
	w.inflight--
	w.served++
	l.inflight--
	switch w.state {
	case Ready:
		if l.cfg.MaxRequests > 0 && w.served >= uint64(l.cfg.MaxRequests) {
			l.retireLocked(w, "max_requests")
		} else {
			l.feedLocked(w)
		}
	case Retiring:
		if w.inflight == 0 {
			go l.retire(w)
		}
	case Killing:
		if w.inflight == 0 {
			w.hardKill()
		}
	}
	l.mu.Unlock()
}

// Abandon returns w's slot for a request that never reached w (see
// Failed); nothing is counted.
func (l *Lane) Abandon(w *Worker) {
	l.mu.Lock()
	w.inflight--
	l.inflight--
	l.feedLocked(w) // feeds only a worker still in rotation
	l.mu.Unlock()
}

// Timeout records that a request on w passed the lane's request_timeout:
// w leaves rotation at once and a replacement starts; w is SIGKILLed as
// soon as its other requests (with concurrency > 1) have ended or passed
// their own deadlines. Call it before Release. The log line says where the
// worker's threads wait, so an operator can see where it hung.
func (l *Lane) Timeout(w *Worker, method, path string, queue, run time.Duration) {
	l.timeouts.Add(1)
	wchan, sysc := whereHung(w.pid)
	l.log.Error("request timeout; killing worker",
		"method", method, "path", path, "pid", w.pid,
		"queue", queue.Round(time.Microsecond), "run", run.Round(time.Microsecond),
		"limit", l.cfg.RequestTimeout, "wchan", wchan, "syscall", sysc)
	l.mu.Lock()
	if w.state == Ready || w.state == Retiring {
		l.condemnLocked(w)
	}
	l.mu.Unlock()
}

// condemnLocked takes w out of rotation for a kill and starts its
// replacement; the caller decides when the SIGKILL lands.
func (l *Lane) condemnLocked(w *Worker) {
	w.state = Killing
	l.killed.Add(1)
	l.reconcileLocked()
	l.notifyLocked()
}

// Failed records that a request could not be exchanged with w over its
// data plane (refused, reset, closed early): typically w has just died and
// its exit is not reaped yet. w gets no more requests until a health check,
// started now, clears it; if w is gone, its exit replaces it as usual, and
// counts as a crash.
func (l *Lane) Failed(w *Worker, err error) {
	l.mu.Lock()
	first := w.state == Ready && !w.suspect
	if first {
		w.suspect = true
	}
	l.mu.Unlock()
	if first {
		l.log.Warn("worker failed a request; out of rotation until healthy", "pid", w.pid, "error", err)
		go l.check(w)
	}
}

// retireLocked takes w out of rotation to stop it gracefully once idle, and
// starts its replacement.
func (l *Lane) retireLocked(w *Worker, why string) {
	l.log.Info("recycling worker", "pid", w.pid, "reason", why, "served", w.served)
	w.state = Retiring
	l.reconcileLocked()
	l.notifyLocked()
	if w.inflight == 0 {
		go l.retire(w)
	}
}

// retire stops an idle retiring worker, bounded like a lane stop.
func (l *Lane) retire(w *Worker) {
	ctx, cancel := context.WithTimeout(l.ctx, retireTimeout)
	defer cancel()
	w.stop(ctx)
}

// healthLoop checks every ready worker over the control plane, each call
// with its own deadline; a worker that does not answer is killed (its
// control plane is wedged, so its data plane cannot be trusted), one above
// max_rss is recycled.
func (l *Lane) healthLoop() {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		ready := make([]*Worker, 0, len(l.workers))
		for _, w := range l.workers {
			if w.state == Ready {
				ready = append(ready, w)
			}
		}
		l.mu.Unlock()
		for _, w := range ready {
			go l.check(w)
		}
	}
}

func (l *Lane) check(w *Worker) {
	ctx, cancel := context.WithTimeout(l.ctx, healthTimeout)
	defer cancel()
	_, err := w.ctl.Health(ctx)
	if err != nil {
		// A worker that is dying fails its check too: let its exit be
		// reaped and handled (and counted as a crash) rather than kill it.
		select {
		case <-w.exited():
			return
		case <-time.After(exitGrace):
		}
	}
	size, _ := rss(w.pid)
	l.mu.Lock()
	defer l.mu.Unlock()
	w.rss = size
	if w.state != Ready {
		return
	}
	if err == nil {
		if w.suspect {
			l.log.Info("worker healthy again; back in rotation", "pid", w.pid)
			w.suspect = false
			l.feedLocked(w)
		}
		// A worker started after the last crash and stable since ends a
		// crash loop (a stable sibling from before says nothing).
		if l.crashes > 0 && w.ready.After(l.lastCrash) && time.Since(w.ready) >= stableAfter {
			l.crashes = 0
			l.notifyLocked()
		}
	}
	switch {
	case err != nil && l.ctx.Err() == nil:
		l.log.Error("worker failed its health check; killing", "pid", w.pid, "error", err)
		l.condemnLocked(w)
		w.hardKill()
	case l.cfg.MaxRSS > 0 && size > l.cfg.MaxRSS:
		l.retireLocked(w, "max_rss")
	}
}

// Stop stops the lane: queued requests are refused, and every worker
// finishes its requests (up to ctx) and exits — or, with immediate, is
// SIGKILLed at once. Stop returns when every worker process is gone.
func (l *Lane) Stop(ctx context.Context, immediate bool) {
	l.mu.Lock()
	l.stopping = true
	if l.retry != nil {
		l.retry.Stop()
	}
	for _, wt := range l.queue {
		wt.ch <- nil
	}
	l.queue = nil
	ws := append([]*Worker(nil), l.workers...)
	// A worker's fields set while it starts may be read only once it has
	// left Starting under the lock; run() kills those still starting.
	starting := make([]bool, len(ws))
	condemned := make([]bool, len(ws))
	for i, w := range ws {
		starting[i] = w.state == Starting
		condemned[i] = w.state == Killing // hung: nothing to wait for
		if w.state != Dead {
			w.state = Stopping
		}
	}
	l.notifyLocked()
	l.mu.Unlock()
	for i, w := range ws {
		switch {
		case starting[i]:
		case immediate || condemned[i]:
			w.hardKill()
		default:
			go w.stop(ctx)
		}
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for i, w := range ws {
			// A starting worker's fields are still being written by run(),
			// and a hardKill before its fork would use up killOnce and leave
			// the process running: run() kills it once its start ends.
			if !starting[i] {
				w.hardKill()
			}
		}
		<-done
	}
	l.cancel()
}
