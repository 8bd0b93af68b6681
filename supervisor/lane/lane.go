// Package lane owns a lane: a pool of worker processes between min_workers
// and max_workers, the bounded admission queue in front of it, dispatch to
// the least-loaded worker, and the watchdog side of containment — a worker
// whose request passed the lane's hard timeout leaves rotation and is
// killed (SIGQUIT for its stacks, then SIGKILL) and replaced. The lane grows
// when requests wait and every worker is busy, shrinks after idle_timeout,
// resizes and drains on demand (a replacement is ready before the worker it
// replaces leaves rotation), and recycles workers by max_requests and
// max_rss the same way. Each worker process is supervised by a proc.Child
// (its start, exit and health checks, delivered to the lane as events);
// the lane keeps the placement rules: how many, which to stop, drain and
// probation order, idle, max_requests. Env.New is the seam that lets the
// state machine be tested without processes.
//
// A request given a worker leaves the lane through one call, Release,
// with its Outcome, which feeds the lane's stats; the front (package front)
// does the rest of the request's accounting. The front reaches the lane
// through Acquire and the Worker's request-path methods (Do, Exchange,
// Begin, Handoff, Release): it never holds a worker's client.
package lane

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/logging"
	"github.com/lanes-dev/lanes/supervisor/proc"
)

// Errors of admission. The front answers all of them with 503 + Retry-After.
var (
	ErrQueueFull    = errors.New("lanes: queue full")
	ErrQueueTimeout = errors.New("lanes: queue timeout")
	ErrStopped      = errors.New("lanes: lane stopped")
)

// The supervision policy of workers (health interval, stable-after,
// probation of replacements, crash-loop back-off) is proc.WorkerPolicy;
// fetchd's Child follows the same rules with its own numbers. The lane's
// workers share one CrashLoop, which gates every spawn (reconcileLocked),
// since the lane, not a child, decides what starts next. A worker counts
// toward a crash loop only when it dies before it answered any request
// and within StableAfter of its start: one that served and then died (a
// request that crashes it, the OOM killer) is replaced at once, so
// requests that crash workers can never empty a lane.
const (
	rssInterval = 500 * time.Millisecond // max_rss checks besides the per-request one
	exitGrace   = time.Second            // for an exec worker that broke an answer to be reaped (as policy.ExitGrace after a failed check)
	// The two-phase kill of a hung worker: SIGQUIT, at most quitGrace for
	// its stacks, then SIGKILL; at most stackMax bytes of them are logged.
	quitGrace = 200 * time.Millisecond
	stackMax  = 64 << 10
	// The newest stackFiles dumps of a lane are kept in the run directory;
	// older ones are removed, so a worker hanging every minute for months
	// does not fill a tmpfs.
	stackFiles = 50
)

// Env is what every lane of a supervisor shares.
type Env struct {
	Spawner   *proc.Spawner
	RunDir    string       // private 0700 directory for sockets
	Builtin   []string     // argv of the built-in worker (lanesd's own worker subcommand)
	Shim      []string     // argv of the shim that runs an exec worker (lanesd's exec-shim subcommand)
	WorkerEnv []string     // extra environment for every worker (shared.WorkerEnv.Encode)
	Log       hclog.Logger // the supervisor's logger; the lane names its own
	// Event, when set, receives the lane's events (kills, crashes,
	// drains, resizes) with Lane filled in. It must not call the lane.
	Event func(api.Event)
	// New makes a worker process; nil means package proc. Tests put fakes
	// here.
	New func(proc.Spec) Proc
	// Upstream is app.upstream, which a direct lane proxies to.
	Upstream string
}

// Lane is one lane. All methods are safe for concurrent use.
type Lane struct {
	name string
	log  hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the lane starts

	requestTimeout atomic.Int64 // read per request without the lock

	mu        sync.Mutex
	cfg       config.Lane
	env       Env
	argv      []string
	workers   []*Worker
	queue     []*waiter
	seq       int
	inflight  int
	policy    proc.Policy
	crash     proc.CrashLoop
	lastExit  string
	lastDrain string               // how the last drain ended
	reqs      map[*Outcome]*Worker // requests running on a worker (Begin to Release)
	outflow   drainRate            // requests leaving workers per second, for Retry-After
	onEvent   func(api.Event)
	lastErr   string
	stacks    []string // stack dump files kept, oldest first
	started   bool     // Start has spawned the first workers
	stopping  bool
	draining  int // drains running
	retry     *time.Timer
	changed   chan struct{} // closed and replaced on every state change
	direct    *Worker       // a direct lane's slot holder (direct.go); nil: worker processes

	served, rejected, timeouts, killed, respawns, drains, failed atomic.Uint64
	scaleUps                                                     atomic.Uint64 // workers started for load or a larger min_workers
	owed                                                         int           // workers lost (died, killed) not yet replaced; guarded by mu
	goroutines                                                   atomic.Int64

	lat latency
}

// New returns a lane; Start launches its workers.
func New(cfg config.Lane, env Env) *Lane {
	l := &Lane{
		name:    cfg.Name,
		log:     env.Log.Named("lane").With("lane", cfg.Name),
		changed: make(chan struct{}),
		policy:  proc.WorkerPolicy,
		reqs:    make(map[*Outcome]*Worker),
		onEvent: env.Event,
	}
	l.crash.Policy = l.policy
	l.setConfigLocked(cfg, env)
	if cfg.Direct {
		l.newDirectLocked()
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

func (l *Lane) setConfigLocked(cfg config.Lane, env Env) {
	l.cfg, l.env = cfg, env
	l.argv = cfg.Command
	if len(l.argv) == 0 {
		l.argv = env.Builtin
	}
	l.requestTimeout.Store(int64(cfg.RequestTimeout))
}

// Name returns the lane's name.
func (l *Lane) Name() string { return l.name }

// RequestTimeout returns the lane's hard timeout.
func (l *Lane) RequestTimeout() time.Duration { return time.Duration(l.requestTimeout.Load()) }

// Config returns the lane's current settings (sizes as resized).
func (l *Lane) Config() config.Lane { l.mu.Lock(); defer l.mu.Unlock(); return l.cfg }

// goCounted runs f on a goroutine the lane counts and Stop waits for; it
// needs no lock.
func (l *Lane) goCounted(f func()) {
	l.wg.Add(1)
	l.goroutines.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.goroutines.Add(-1)
		f()
	}()
}

// Start launches min_workers workers and waits until they are ready. If a
// worker cannot start at all (a wrong command, a worker that does not
// handshake), Start stops what it started and returns the error.
func (l *Lane) Start(ctx context.Context) error {
	if l.direct != nil {
		return l.startDirect()
	}
	l.mu.Lock()
	for range l.cfg.MinWorkers {
		l.spawnLocked(nil)
	}
	l.started = true
	l.goCounted(l.idleLoop)
	l.goCounted(l.rssLoop)
	l.mu.Unlock()
	for {
		l.mu.Lock()
		ready, starting := l.countLocked(Ready), l.countLocked(Starting)
		lastErr, ch, want := l.lastErr, l.changed, l.cfg.MinWorkers
		l.mu.Unlock()
		if ready >= want {
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

func (l *Lane) countLocked(s State) int {
	n := 0
	for _, w := range l.workers {
		if w.state == s {
			n++
		}
	}
	return n
}

// activeLocked counts the workers that serve or will: starting and ready.
func (l *Lane) activeLocked() int { return l.countLocked(Starting) + l.countLocked(Ready) }

// notifyLocked wakes everything waiting for a state change.
func (l *Lane) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// spawnLocked adds a starting worker and launches it in the background;
// replaces is the worker it will take the place of, if any.
func (l *Lane) spawnLocked(replaces *Worker) *Worker {
	l.seq++
	w := &Worker{lane: l, seq: l.seq, state: Starting, started: time.Now(), replaces: replaces, conc: max(l.cfg.Concurrency, 1), exec: l.cfg.IsExec()}
	if replaces != nil {
		replaces.replacement = w
		l.respawns.Add(1)
	}
	if n := l.cfg.MaxRequests; n > 0 {
		w.maxServed = uint64(n)
		if j := l.cfg.MaxRequestsJitter; j > 0 {
			w.maxServed += uint64(rand.IntN(j + 1))
		}
	}
	spec := proc.Spec{
		Command: l.argv,
		Env: slices.Concat(
			shared.WorkerEnv{Lane: l.name, ParentPID: os.Getpid()}.Encode(),
			[]string{"GOTRACEBACK=all"}, // SIGQUIT prints every goroutine (two-phase kill)
			l.env.WorkerEnv),
		RunDir:  l.env.RunDir,
		Name:    fmt.Sprintf("w-%s-%d", l.name, w.seq),
		Log:     l.log.Named("worker"),
		Spawner: l.env.Spawner,
	}
	switch {
	case l.env.New != nil:
		w.proc = l.env.New(spec)
	case l.cfg.IsExec():
		w.proc = proc.NewExec(l.execSpecLocked(spec.Name))
	default:
		w.proc = proc.New(spec)
	}
	l.workers = append(l.workers, w)
	w.child = proc.NewChild(proc.ChildSpec{
		Policy: l.policy,
		New:    func() proc.Proc { return w.proc },
		Skip:   func() bool { return l.skipCheck(w) },
		On:     func(ev proc.Event) { l.on(w, ev) },
	})
	l.goCounted(func() { w.child.Run(l.ctx) })
	return w
}

// execSpecLocked is how an exec worker of this lane starts: the program
// with lanesd's environment less what would mislead it (lanesd's own
// socket activation, sd_notify socket, PORT and LANES_ variables), plus
// exec_env and LANES_LANE; package proc adds the socket's variables.
func (l *Lane) execSpecLocked(name string) proc.ExecSpec {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return shared.ExecEnvReserved(k) || strings.HasPrefix(k, "PLUGIN_") || k == shared.Handshake.MagicCookieKey
	})
	c := l.cfg
	return proc.ExecSpec{
		Shim:        l.env.Shim,
		Command:     c.Exec,
		Dir:         c.ExecDir,
		Env:         append(append(env, c.ExecEnv...), shared.WorkerEnv{Lane: l.name}.Encode()...),
		Port:        c.ExecSocket == config.ExecSocketPort,
		HealthPath:  c.HealthPath,
		Notify:      c.Ready == config.ReadyNotify,
		StopSignal:  config.StopSignals[c.StopSignal],
		StopTimeout: c.StopTimeout,
		RunDir:      l.env.RunDir,
		Name:        name,
		Log:         l.log.Named("worker"),
		Spawner:     l.env.Spawner,
	}
}

// on handles the events of w's proc.Child, in order, on the child's
// goroutine: w's start, its health checks, its exit. The lane's rules
// (rotation, replacement, crash loops) are applied here, under the lane's
// lock.
func (l *Lane) on(w *Worker, ev proc.Event) {
	switch ev.Kind {
	case proc.Failed:
		l.startFailed(w, ev.Err)
	case proc.Started:
		l.ready(w, ev.RSS)
	case proc.Health:
		l.checked(w, ev)
	case proc.Exited:
		l.exited(w, ev)
	}
}

// startFailed handles a worker that could not start.
func (l *Lane) startFailed(w *Worker, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.pid = w.proc.PID()
	deliberate := l.stopping || w.state == Stopping // killed while starting
	l.removeLocked(w)
	w.state = Dead
	if r := w.replaces; r != nil {
		r.replacement = nil
	}
	if !deliberate {
		l.crashLocked(err.Error())
		l.lastErr = err.Error()
		l.log.Error("worker failed to start", "error", err, "consecutive", l.crash.Count())
		l.event(api.Event{Kind: api.EventCrash, PID: w.pid, Detail: "failed to start: " + err.Error()})
		l.reconcileLocked()
	}
	l.notifyLocked()
}

// ready puts a started worker in rotation; size is its resident size,
// shown from the start, not from the first health check.
func (l *Lane) ready(w *Worker, size int64) {
	var hc *fasthttp.HostClient
	if ep, ok := w.proc.(*proc.ExecProcess); ok {
		// A program we did not write may close an idle connection after
		// a keep-alive timeout of its own (2 s in gunicorn's gthread, 5 s
		// in uvicorn and node): keep idle connections for less.
		network, addr := ep.DataAddr()
		hc = dataClient(network, addr, w.conc, execMaxIdle)
	} else {
		hc = newDataClient(w.proc.Socket(), w.conc)
	}
	l.mu.Lock()
	w.pid = w.proc.PID()
	w.rss = size
	w.hc = hc
	if l.stopping || w.state == Stopping {
		w.state = Stopping
		l.mu.Unlock()
		w.proc.Kill()
		return
	}
	w.state = Ready
	w.ready = time.Now()
	w.idleSince = w.ready
	l.lastErr = ""
	l.log.Debug("worker ready", "pid", w.pid, "start", logging.Dur(w.ready.Sub(w.started)))
	if w.replaces != nil {
		// The old worker leaves rotation only once its replacement
		// has stayed up for its probation.
		l.goCounted(func() { l.probation(w) })
	}
	l.feedLocked(w)
	l.notifyLocked()
	l.mu.Unlock()
}

// exited handles the exit of a worker that had started.
func (l *Lane) exited(w *Worker, ev proc.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := w.state
	w.state = Dead
	l.removeLocked(w)
	if prev == Ready || prev == Starting {
		l.owed++ // to be replaced: a respawn, not growth (a condemned one was counted then)
	}
	if prev == Ready || prev == Starting {
		up := ev.Uptime
		l.log.Warn("worker exited", "pid", w.pid, "status", w.proc.ExitErr(), "uptime", logging.Dur(up.Round(time.Millisecond)), "inflight", w.inflight, "served", w.served)
		l.event(api.Event{Kind: api.EventCrash, PID: w.pid,
			Detail: fmt.Sprintf("%s after %s, %d served", w.proc.ExitErr(), up.Round(time.Millisecond), w.served)})
		// A worker that answered requests proved the program works: its
		// death (a request that crashes it, the OOM killer, an operator's
		// kill) says nothing about the next one, which starts at once.
		// One that dies young (ev.Early: within StableAfter) without
		// answering anything may be a loop.
		sig, signaled := w.proc.Signaled()
		killed := signaled && sig == syscall.SIGKILL && w.served > 0
		if ev.Early && w.answered == 0 && !killed {
			l.crashLocked(w.proc.ExitErr())
		} else {
			l.crash.Reset()
			l.lastExit = w.proc.ExitErr()
		}
	}
	if r := w.replaces; r != nil && r.replacement == w {
		r.replacement = nil // it never took r's place (killed while starting)
		w.replaces = nil
	}
	if w.replacement != nil && w.replacement.state == Starting {
		// What it was being replaced for no longer matters: its
		// replacement now replaces a dead worker.
		w.replacement.replaces = nil
	}
	w.hc.CloseIdleConnections()
	l.reconcileLocked()
	l.notifyLocked()
}

// crashLocked records an early death toward a crash loop and sets the
// back-off.
func (l *Lane) crashLocked(why string) {
	l.lastExit = why
	d := l.crash.Early(why, time.Now())
	if l.crash.Count() == l.policy.LoopAt {
		l.log.Error("worker crash loop; backing off", "crashes", l.crash.Count(), "backoff", logging.Dur(d), "last", why)
	}
}

// probation retires the worker w replaces once w has stayed up for the
// policy's probation; if w dies first, the old worker stays in rotation
// (its exit clears the link) and the drain that started w sees it.
func (l *Lane) probation(w *Worker) {
	if !l.sleep(l.policy.Probation) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := w.replaces
	if r == nil || w.state != Ready || r.replacement != w {
		return
	}
	w.replaces = nil
	r.replacement = nil
	if r.state == Ready {
		l.retireLocked(r, r.why)
	}
}

// reconcileLocked spawns workers until min_workers are starting or ready,
// and more while requests wait and every worker is busy (up to
// max_workers), unless the lane is backing off from a crash loop.
func (l *Lane) reconcileLocked() {
	if l.stopping || l.direct != nil {
		return
	}
	active := l.activeLocked()
	need := l.cfg.MinWorkers - active
	respawn := need > 0 && l.started
	if grow := l.growthLocked(active); grow > need {
		need = grow
	}
	if need <= 0 {
		return
	}
	if wait := time.Until(l.crash.Until()); wait > 0 {
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
	// Respawns replace workers that died or were killed; the rest of what
	// starts here is growth (load, or a larger min_workers).
	r := 0
	if respawn {
		r = min(need, l.cfg.MinWorkers-active, l.owed)
		l.owed -= r
		l.respawns.Add(uint64(r))
	}
	l.scaleUps.Add(uint64(need - r))
	for range need {
		l.spawnLocked(nil)
	}
}

// growthLocked returns how many workers to add for the requests waiting:
// enough to take the whole queue, counting those already starting, within
// max_workers. Deep queues spawn in parallel.
func (l *Lane) growthLocked(active int) int {
	if len(l.queue) == 0 || active >= l.cfg.MaxWorkers {
		return 0
	}
	for _, w := range l.workers {
		if l.freeLocked(w) {
			return 0 // a worker has room: the queue is about to move
		}
	}
	conc := max(l.cfg.Concurrency, 1)
	want := (len(l.queue)+conc-1)/conc - l.countLocked(Starting)
	n := min(want, l.cfg.MaxWorkers-active)
	if n > 0 {
		l.log.Debug("growing", "queued", len(l.queue), "active", active, "spawn", n, "max_workers", l.cfg.MaxWorkers)
	}
	return n
}

func (l *Lane) removeLocked(w *Worker) {
	if i := slices.Index(l.workers, w); i >= 0 {
		l.workers = slices.Delete(l.workers, i, i+1)
	}
}

// freeLocked says w is in rotation and has a free slot.
func (l *Lane) freeLocked(w *Worker) bool {
	return w.state == Ready && !w.suspect && w.inflight < w.conc
}

// pickLocked returns the least-loaded ready worker with a free slot. A
// worker whose replacement is ready and on probation is standby: it takes
// a request only when no other worker can, so the replacement gets the
// traffic that proves it.
func (l *Lane) pickLocked() *Worker {
	var best, standby *Worker
	for _, w := range l.workers {
		if !l.freeLocked(w) {
			continue
		}
		if r := w.replacement; r != nil && r.state == Ready {
			if standby == nil || w.inflight < standby.inflight {
				standby = w
			}
			continue
		}
		if best == nil || w.inflight < best.inflight {
			best = w
			if w.inflight == 0 {
				break
			}
		}
	}
	if best == nil {
		return standby
	}
	return best
}

// takeLocked gives one of w's slots to a request.
func (l *Lane) takeLocked(w *Worker) {
	w.inflight++
	l.inflight++
}

// feedLocked hands w's free slots to waiting requests, oldest first.
func (l *Lane) feedLocked(w *Worker) {
	for len(l.queue) > 0 && l.freeLocked(w) {
		wt := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		l.takeLocked(w)
		wt.ch <- w
	}
}

// Acquire waits for a slot on a ready worker: at once if one is free, else
// in the lane's queue, bounded by max_queue and queue_timeout. A request
// that waits makes the lane grow if every worker is busy. The caller must
// Release the worker.
func (l *Lane) Acquire() (*Worker, error) {
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return nil, ErrStopped
	}
	if len(l.queue) == 0 {
		if w := l.pickLocked(); w != nil {
			l.takeLocked(w)
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
	l.reconcileLocked()
	timeout := l.cfg.QueueTimeout
	l.mu.Unlock()

	w, err := wt.wait(l, timeout)
	releaseWaiter(wt)
	if err != nil {
		l.rejected.Add(1)
	}
	return w, err
}

// dequeueLocked removes wt from the queue; false if it was already handed a
// worker (or the lane's stop).
func (l *Lane) dequeueLocked(wt *waiter) bool {
	if i := slices.Index(l.queue, wt); i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
		return true
	}
	return false
}

// Result is how a request's exchange with its worker ended.
type Result int

const (
	// Answered: the worker answered (whatever the status) and the body,
	// if any, was delivered whole.
	Answered Result = iota
	// Undelivered: the worker never got the request (dial or write failed).
	// Not counted as served; the worker is suspect until a health check.
	Undelivered
	// Broken: the data plane failed after the request was sent (reset,
	// closed early, body cut short). The worker is suspect.
	Broken
	// HardTimeout: the request ran past request_timeout on the worker. The
	// worker is condemned: killed (two-phase) and replaced.
	HardTimeout
	// ClientGone: the client went away or was too slow while the body was
	// streaming; the worker did nothing wrong.
	ClientGone
	// Refused: no worker was given (queue full, queue timeout, stopping).
	// The lane never sees such an Outcome; the front's accounting does.
	Refused
	// StaleConn: the worker closed a reused keep-alive connection as the
	// request went out, and answered nothing. Nothing says the worker is
	// broken (nginx retries on such a cached connection too): it is
	// suspect until a health check, not replaced.
	StaleConn
)

// Outcome is what the lane, and the front's accounting after it, need to
// know about one request that leaves the lane.
type Outcome struct {
	Result Result
	Err    error
	// Retry says the front will retry the request on another worker: this
	// attempt is not counted as a served request.
	Retry        bool
	Status       int
	Bytes        int
	Method, Path []byte
	PID          int
	Queue        time.Duration
	Filter, Run  time.Duration // the worker's part; Run excludes Filter
	Total        time.Duration
	Truncated    bool
	// For Requests, while the request runs on its worker: the client's
	// address, when it got its worker, and when its hard timeout ends it.
	Client   netip.Addr
	Started  time.Time
	Deadline time.Time
}

// Release returns w's slot after a request and records how it ended. It is
// the one way a request that was given a worker leaves the lane.
func (l *Lane) Release(w *Worker, o *Outcome) {
	o.PID = w.pid
	switch o.Result {
	case HardTimeout:
		l.timeouts.Add(1)
		if l.direct != nil {
			l.timeoutDirect(o)
			break
		}
		l.event(api.Event{Kind: api.EventKill, PID: w.pid, Method: string(o.Method), Path: string(o.Path),
			Detail: fmt.Sprintf("request_timeout %s", l.RequestTimeout())})
		wchan, sysc := w.proc.WhereHung()
		l.log.Debug("request timeout; killing worker",
			"method", string(o.Method), "path", string(o.Path), "pid", w.pid,
			"queue", logging.Dur(o.Queue.Round(time.Microsecond)), "run", logging.Dur((o.Filter + o.Run).Round(time.Microsecond)),
			"limit", logging.Dur(l.RequestTimeout()), "wchan", wchan, "syscall", sysc)
		l.mu.Lock()
		if w.state == Ready || w.state == Retiring {
			w.hung = &hungRequest{method: string(o.Method), path: string(o.Path), queue: o.Queue, run: o.Filter + o.Run, wchan: wchan, syscall: sysc}
			l.condemnLocked(w, "request timeout")
		}
		l.mu.Unlock()
	case Broken:
		l.failed.Add(1)
		if w.exec {
			// A program we did not write answered something that is not
			// HTTP, or broke off: its state cannot be trusted (a thread of
			// it may be wedged); it is replaced, not just checked. Unless
			// it is dying anyway: then its exit is handled as a crash
			// (and counted toward a crash loop), not as a kill.
			why := "broken response: " + errText(o.Err)
			method, path := string(o.Method), string(o.Path)
			l.goCounted(func() {
				select {
				case <-w.proc.Exited():
					return
				case <-time.After(exitGrace):
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				if w.state == Ready {
					l.log.Warn("exec worker broke a response; replacing it", "pid", w.pid, "reason", why)
					w.hung = nil
					l.event(api.Event{Kind: api.EventKill, PID: w.pid, Method: method, Path: path, Detail: why})
					l.condemnLocked(w, why)
				}
			})
			l.mu.Lock()
			if w.state == Ready && !w.suspect {
				w.suspect = true // out of rotation meanwhile
			}
			l.mu.Unlock()
		} else if l.direct == nil { // a direct lane's slots have no process to check
			l.suspect(w, o.Err)
		}
	case Undelivered:
		l.failed.Add(1)
		if l.direct == nil {
			l.suspect(w, o.Err)
		}
	case StaleConn:
		// Out of rotation until a health check all the same: a worker
		// killed meanwhile looks the same from here, and the front's
		// retry must go to another.
		l.failed.Add(1)
		if l.direct == nil {
			l.suspect(w, errStaleConn)
		}
	}
	if !o.Retry {
		l.served.Add(1)
		l.lat.add(o.Total)
	}
	l.mu.Lock()
	l.outflow.add(time.Now())
	delete(l.reqs, o)
	w.inflight--
	l.inflight--
	if (o.Result != Undelivered && o.Result != StaleConn) || !o.Retry {
		w.served++
	}
	if (o.Result == Answered || o.Result == ClientGone) && !o.Started.IsZero() { // dispatched: it proves the program works
		w.answered++
	}
	if w.inflight == 0 {
		w.idleSince = time.Now()
	}
	checkRSS := l.cfg.MaxRSS > 0 && !w.exec && w.state == Ready && w.replacement == nil
	switch w.state {
	case Ready:
		if w.maxServed > 0 && w.served >= w.maxServed && w.replacement == nil {
			l.replaceLocked(w, "max_requests")
		}
		l.feedLocked(w)
	case Retiring:
		if w.inflight == 0 {
			l.goCounted(func() { l.retire(w) })
		}
	case Killing:
		if w.inflight == 0 {
			l.goCounted(func() { l.kill(w) })
		}
	case Stopping:
		if w == l.direct && w.inflight == 0 {
			l.notifyLocked() // stopDirect waits for this
		}
	}
	l.mu.Unlock()
	if checkRSS {
		// After every request, not only on the health interval: a worker
		// that leaks 50 MB a request must not reach many times max_rss.
		l.checkRSS(w, w.proc.RSS())
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

// checkRSS records w's resident size and replaces w when it is above
// max_rss.
func (l *Lane) checkRSS(w *Worker, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size > 0 {
		w.rss = size
	}
	if l.cfg.MaxRSS > 0 && size > l.cfg.MaxRSS && w.state == Ready && w.replacement == nil {
		l.replaceLocked(w, "max_rss")
	}
}

// rssLoop checks the resident size of every ready worker twice a second
// while the lane has a max_rss: an exec worker's size is its whole process
// group's, too costly to read after every request.
func (l *Lane) rssLoop() {
	t := time.NewTicker(rssInterval)
	defer t.Stop()
	var ws []*Worker
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		ws = ws[:0]
		if l.cfg.MaxRSS > 0 {
			for _, w := range l.workers {
				if w.state == Ready && w.replacement == nil {
					ws = append(ws, w)
				}
			}
		}
		l.mu.Unlock()
		for _, w := range ws {
			l.checkRSS(w, w.proc.RSS())
		}
	}
}

// drainRate estimates how many requests per second leave the lane's
// workers: counted in one-second buckets, smoothed over a few of them.
type drainRate struct {
	start time.Time
	n     int
	rate  float64
}

func (d *drainRate) add(now time.Time) {
	d.roll(now)
	d.n++
}

// roll closes the bucket once a second has passed (idle seconds count as
// zero, so a stalled lane's rate falls).
func (d *drainRate) roll(now time.Time) {
	el := now.Sub(d.start)
	if el < time.Second {
		return
	}
	if !d.start.IsZero() {
		secs := el.Seconds()
		d.rate = d.rate*math.Pow(0.5, secs) + float64(d.n)/secs*(1-math.Pow(0.5, secs))
	}
	d.start, d.n = now, 0
}

// RetryAfter is how many seconds a client refused with 503 should wait:
// the time the lane needs to drain its queue at its measured rate, at
// least 1 s and at most the queue_timeout (60 s when none), and the
// queue_timeout when nothing has left the lane lately.
func (l *Lane) RetryAfter() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outflow.roll(time.Now())
	hi := l.cfg.QueueTimeout.Seconds()
	if hi < 1 {
		hi = 60
	}
	wait := hi
	if r := l.outflow.rate; r > 0.01 {
		wait = float64(len(l.queue)+1) / r
	}
	return int(math.Ceil(min(max(wait, 1), hi)))
}

// Begin records that o runs on w from now until its Release, for
// Requests (GET /api/requests). o's Method, Path, Client, Started and
// Deadline must be set and stay unchanged until then.
func (l *Lane) Begin(w *Worker, o *Outcome) {
	l.mu.Lock()
	l.reqs[o] = w
	l.mu.Unlock()
}

// Handoff moves the record of a running request from o to its copy to,
// which its Release will get (a response handed to the spool).
func (l *Lane) Handoff(o, to *Outcome) {
	l.mu.Lock()
	if w, ok := l.reqs[o]; ok {
		delete(l.reqs, o)
		l.reqs[to] = w
	}
	l.mu.Unlock()
}

// Requests appends the lane's running requests to dst.
func (l *Lane) Requests(dst []api.InflightRequest, now time.Time) []api.InflightRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	for o, w := range l.reqs {
		r := api.InflightRequest{Lane: l.name, Worker: w.pid, Method: string(o.Method), Path: string(o.Path),
			Elapsed: now.Sub(o.Started).Seconds(), TimeoutIn: max(o.Deadline.Sub(now), 0).Seconds(), Queued: o.Queue.Seconds()}
		if o.Client.IsValid() {
			r.Client = o.Client.String()
		}
		dst = append(dst, r)
	}
	return dst
}

// event sends e to the Event hook (fixed at New: a reload keeps it).
func (l *Lane) event(e api.Event) {
	if l.onEvent != nil {
		e.Lane = l.name
		l.onEvent(e)
	}
}

// condemnLocked takes w out of rotation to be killed once its other
// requests end, and starts its replacement.
func (l *Lane) condemnLocked(w *Worker, why string) {
	w.state = Killing
	w.why = why
	l.killed.Add(1)
	l.owed++ // its replacement, started now, is a respawn
	if r := w.replacement; r != nil {
		r.replaces = nil // it now simply adds a worker
		w.replacement = nil
	}
	l.reconcileLocked()
	l.notifyLocked()
	if w.inflight == 0 {
		l.goCounted(func() { l.kill(w) })
	}
}

// kill ends a condemned worker in two phases and writes the kill's log
// record: the hung request, where its threads waited, and the goroutine
// stacks a Go worker printed on SIGQUIT.
func (l *Lane) kill(w *Worker) {
	stacks := w.proc.Quit(quitGrace, stackMax)
	args := []any{"pid", w.pid, "reason", w.why}
	if h := w.hung; h != nil {
		args = append(args, "method", h.method, "path", h.path,
			"queue", logging.Dur(h.queue.Round(time.Microsecond)), "run", logging.Dur(h.run.Round(time.Microsecond)),
			"wchan", h.wchan, "syscall", h.syscall)
	}
	if stacks != "" {
		if wh := where(stacks); wh != "" {
			args = append(args, "where", wh)
		}
		// The whole dump (hundreds of lines) goes to a file the line
		// names, and to the debug level; the line itself stays one line.
		file := filepath.Join(l.env.RunDir, fmt.Sprintf("stacks-%s-%d.txt", l.name, w.pid))
		if l.env.RunDir != "" && os.WriteFile(file, []byte(stacks), 0o600) == nil {
			args = append(args, "stacks", file)
			l.keepStacks(file)
		}
		l.log.Debug("stacks of the killed worker", "pid", w.pid, "stacks", stacks)
	}
	l.log.Error("worker killed", args...)
}

// keepStacks records a stack dump file and removes the oldest beyond
// stackFiles.
func (l *Lane) keepStacks(file string) {
	l.mu.Lock()
	l.stacks = append(l.stacks, file)
	var old []string
	if n := len(l.stacks) - stackFiles; n > 0 {
		old = append(old, l.stacks[:n]...)
		l.stacks = append(l.stacks[:0], l.stacks[n:]...)
	}
	l.mu.Unlock()
	for _, f := range old {
		_ = os.Remove(f)
	}
}

// suspect takes w out of rotation after a data-plane failure until a health
// check, started now, clears it; if w is gone, its exit replaces it as
// usual, and counts as a crash.
func (l *Lane) suspect(w *Worker, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.state != Ready || w.suspect {
		return
	}
	w.suspect = true
	switch {
	case err == errStaleConn:
		l.log.Info("worker closed a kept-alive connection as a request went out; out of rotation until a health check", "pid", w.pid)
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		// fasthttp's text advises the server to send Connection: close.
		err = errors.New("the worker closed the connection before answering")
		fallthrough
	default:
		l.log.Warn("worker failed a request; out of rotation until healthy", "pid", w.pid, "error", err)
	}
	w.child.CheckNow()
}

// errStaleConn is suspect's reason for a StaleConn.
var errStaleConn = errors.New("closed a kept-alive connection as a request went out")

// replaceLocked starts a worker to take w's place; w stays in rotation
// until the replacement is ready, then retires. The lane never serves with
// fewer ready workers because of it.
func (l *Lane) replaceLocked(w *Worker, why string) *Worker {
	if w.replacement != nil {
		return w.replacement
	}
	w.why = why
	l.log.Info("replacing worker", "pid", w.pid, "reason", why, "served", w.served)
	return l.spawnLocked(w)
}

// retireLocked takes w out of rotation to stop it gracefully once idle.
func (l *Lane) retireLocked(w *Worker, why string) {
	l.log.Info("retiring worker", "pid", w.pid, "reason", why, "served", w.served)
	w.state = Retiring
	w.why = why
	l.notifyLocked()
	if w.inflight == 0 {
		l.goCounted(func() { l.retire(w) })
	}
}

// retire stops an idle retiring worker, bounded like a lane stop.
func (l *Lane) retire(w *Worker) {
	l.mu.Lock()
	limit := l.policy.StopTimeout
	if w.exec { // its stop_timeout, then the SIGKILL's reap
		limit = max(limit, l.cfg.StopTimeout+5*time.Second)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.ctx, limit)
	defer cancel()
	w.proc.Stop(ctx)
}

// skipCheck says w's child is not to ask w for its health now: only a
// ready worker is checked (over the control plane, or its health path),
// and not a busy exec worker, whose health path would wait behind the
// requests it runs (a single-threaded app server): a slow request must
// not get a healthy worker killed. The hard timeout bounds a hung one.
// Its resident size is still read.
func (l *Lane) skipCheck(w *Worker) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopping || w.state != Ready || (w.exec && w.inflight >= w.conc)
}

// checked handles a health check of w (every policy.HealthInterval, and at
// once after a data-plane failure made w suspect): a worker that does not
// answer is killed (its control plane is wedged, so its data plane cannot
// be trusted), a suspect one that does is back in rotation, one above
// max_rss is replaced.
func (l *Lane) checked(w *Worker, ev proc.Event) {
	if !ev.Probed {
		l.checkRSS(w, ev.RSS)
		return
	}
	err := ev.Err
	l.mu.Lock()
	defer l.mu.Unlock()
	w.rss = ev.RSS
	if err == nil {
		w.goroutines, w.allocs = ev.Stats.Goroutines, ev.Stats.Allocs
	}
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
		if l.crash.ResetIfStable(w.ready, time.Now()) {
			l.notifyLocked()
		}
	}
	switch {
	case err != nil && l.ctx.Err() == nil:
		l.log.Error("worker failed its health check; killing", "pid", w.pid, "error", err)
		l.event(api.Event{Kind: api.EventKill, PID: w.pid, Detail: "health check: " + err.Error()})
		w.hung = nil
		l.condemnLocked(w, "health check: "+err.Error())
		w.proc.Kill() // its requests cannot be trusted to end
	case l.cfg.MaxRSS > 0 && ev.RSS > l.cfg.MaxRSS && w.replacement == nil:
		l.replaceLocked(w, "max_rss")
	}
}

// Stop stops the lane: queued requests are refused, and every worker
// finishes its requests (up to ctx) and exits — or, with immediate, is
// SIGKILLed at once. A worker still starting is killed as soon as it is
// forked. Stop returns when every worker process and every goroutine of the
// lane is gone.
func (l *Lane) Stop(ctx context.Context, immediate bool) {
	if l.direct != nil {
		l.stopDirect(ctx, immediate)
		return
	}
	l.mu.Lock()
	l.stopping = true
	if l.retry != nil {
		l.retry.Stop()
	}
	for _, wt := range l.queue {
		wt.ch <- nil
	}
	l.queue = nil
	ws := slices.Clone(l.workers)
	prev := make([]State, len(ws))
	for i, w := range ws {
		prev[i] = w.state
		if w.state != Dead {
			w.state = Stopping
		}
	}
	l.notifyLocked()
	l.mu.Unlock()
	for i, w := range ws {
		switch {
		case prev[i] == Starting || immediate || prev[i] == Killing:
			w.proc.Kill()
		default:
			l.goCounted(func() { w.proc.Stop(ctx) })
		}
	}
	done := make(chan struct{})
	go func() { l.waitWorkers(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, w := range ws {
			w.proc.Kill()
		}
		<-done
	}
	l.cancel()
	l.wg.Wait()
}

// waitWorkers returns once the lane has no worker left.
func (l *Lane) waitWorkers() {
	for {
		l.mu.Lock()
		n, ch := len(l.workers), l.changed
		l.mu.Unlock()
		if n == 0 {
			return
		}
		<-ch
	}
}
