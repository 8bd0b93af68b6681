package proc

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/lanes-dev/lanes/shared"
)

// Proc is a child process as a Child supervises it: a go-plugin worker or
// fetchd (Process), an exec worker (ExecProcess), or a fake in tests. Kill
// may be called at any time, even while Start runs; after a failed Start,
// Exited is closed once whatever was forked is reaped.
type Proc interface {
	Start(ctx context.Context) error
	PID() int
	Exited() <-chan struct{}
	ExitErr() string
	Signaled() (syscall.Signal, bool)
	Health(ctx context.Context) (shared.WorkerStats, error)
	Kill()
	Stop(ctx context.Context)
	RSS() int64
}

// EventKind says what happened to a child.
type EventKind int

const (
	// Held: Hold refused a start (Err); it is asked again after Backoff.
	Held EventKind = iota
	// Started: Start succeeded, the process is ready; RSS is its size.
	Started
	// Failed: Start failed (Err); whatever was forked has been reaped.
	// It is the last event of that process (no Exited follows) and counts
	// toward a crash loop (Early).
	Failed
	// Health: a health check ended. Probed false: Skip said not to ask
	// the process, and only RSS was read. Err nil: healthy, with Stats.
	// A failed check of a process that exits within the policy's
	// ExitGrace is not delivered: its Exited is.
	Health
	// Exited: the process was reaped after a successful start; Uptime
	// runs from its start, Early says it died within StableAfter.
	Exited
)

func (k EventKind) String() string {
	switch k {
	case Held:
		return "held"
	case Started:
		return "started"
	case Failed:
		return "failed"
	case Health:
		return "health"
	case Exited:
		return "exited"
	}
	return "event(?)"
}

// Event is what a Child tells its owner. Proc is the process it is about
// (nil for Held).
type Event struct {
	Kind   EventKind
	Proc   Proc
	Err    error
	Stats  shared.WorkerStats
	RSS    int64
	Probed bool
	Uptime time.Duration
	// Early: the death says something about the next start (a failed
	// start, or an exit within StableAfter); the owner may know better
	// (a lane worker that answered requests proved the program works).
	Early bool
	// Backoff is the wait before the next start of a restarting child
	// (Held, Failed, Exited): 0 for the first early death and for a
	// death after StableAfter, then the CrashLoop's.
	Backoff time.Duration
}

// ChildSpec says how a Child supervises its processes.
type ChildSpec struct {
	Policy Policy
	// New makes the process of each start: once, or, with Restart, again
	// after every exit.
	New func() Proc
	// Restart keeps one process running until Run's context ends: after
	// a failed start or an exit, the next process starts after the back-off
	// of the Child's own CrashLoop. Without it the Child ends with its
	// process, and the owner decides what starts next (a lane: its
	// placement rules, gated by the lane's one CrashLoop).
	Restart bool
	// Hold, when set, is asked before each start; while it returns an
	// error nothing starts (a cache directory locked by another lanesd),
	// and it is asked again after a wait that doubles from 250 ms up to
	// the policy's BackoffMax.
	Hold func() error
	// Skip, when set, is asked before each health check; true: the
	// process is not asked (a single-threaded program busy with requests
	// would answer only after them), only its size is read.
	Skip func() bool
	// On receives the events, one at a time and in order, on Run's
	// goroutine: the process's events never overtake one another, and no
	// lock of the Child is held meanwhile, so On may take its owner's
	// lock and call Kill, CheckNow and the process's own methods. It
	// must not wait for Run to return. No event is delivered once Run's
	// context has ended.
	On func(Event)
}

// holdRetryMin is the first wait after Hold refused a start.
const holdRetryMin = 250 * time.Millisecond

// Child supervises the processes of one child of lanesd, one at a time,
// in the manner of Nomad's plugin instance manager: it starts each
// process, watches for its exit, checks its health every
// Policy.HealthInterval, backs off restarts by its CrashLoop, and tells
// its owner each of these through ChildSpec.On. What the owner does
// about them (take a worker out of rotation, kill it, replace it) is the
// owner's. Every kind of child uses it: lane workers (go-plugin and exec)
// and fetchd.
type Child struct {
	spec ChildSpec
	now  chan struct{} // CheckNow
	loop CrashLoop     // a restarting child's; touched only by Run
	mu   sync.Mutex
	cur  Proc
}

// NewChild returns a Child; Run supervises it.
func NewChild(spec ChildSpec) *Child {
	if spec.On == nil {
		spec.On = func(Event) {}
	}
	return &Child{spec: spec, now: make(chan struct{}, 1), loop: CrashLoop{Policy: spec.Policy}}
}

// Proc returns the current process (nil before the first start).
func (c *Child) Proc() Proc { c.mu.Lock(); defer c.mu.Unlock(); return c.cur }

// CheckNow asks for a health check at once, as on the next tick; it does
// not wait for it. A request already pending absorbs this one.
func (c *Child) CheckNow() {
	select {
	case c.now <- struct{}{}:
	default:
	}
}

// Run supervises until the child ends (without Restart: its process was
// reaped) or ctx ends; then it stops the current process (at most the
// policy's StopTimeout) and returns once it is reaped.
func (c *Child) Run(ctx context.Context) {
	held := time.Duration(0)
	for ctx.Err() == nil {
		if c.spec.Hold != nil {
			if err := c.spec.Hold(); err != nil {
				held = min(max(2*held, holdRetryMin), c.spec.Policy.BackoffMax)
				c.deliver(ctx, Event{Kind: Held, Err: err, Backoff: held})
				if !sleepCtx(ctx, held) {
					return
				}
				continue
			}
			held = 0
		}
		p := c.spec.New()
		c.mu.Lock()
		c.cur = p
		c.mu.Unlock()
		backoff := c.life(ctx, p)
		if !c.spec.Restart || !sleepCtx(ctx, backoff) {
			return
		}
	}
}

// life runs one process from its start to its reaping and returns the
// back-off before the next.
func (c *Child) life(ctx context.Context, p Proc) time.Duration {
	pol := c.spec.Policy
	if err := p.Start(ctx); err != nil {
		d := time.Duration(0)
		if c.spec.Restart {
			d = c.loop.Early(err.Error(), time.Now())
		}
		c.deliver(ctx, Event{Kind: Failed, Proc: p, Err: err, Early: true, Backoff: d})
		<-p.Exited()
		return d
	}
	ready := time.Now()
	if ctx.Err() != nil {
		c.stop(p)
		return 0
	}
	c.deliver(ctx, Event{Kind: Started, Proc: p, RSS: p.RSS()})
	tick := time.NewTicker(pol.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.Exited():
			up := time.Since(ready)
			ev := Event{Kind: Exited, Proc: p, Uptime: up, Early: up < pol.StableAfter}
			if c.spec.Restart {
				if ev.Early {
					ev.Backoff = c.loop.Early(p.ExitErr(), time.Now())
				} else {
					c.loop.Reset()
				}
			}
			c.deliver(ctx, ev)
			return ev.Backoff
		case <-ctx.Done():
			c.stop(p)
			return 0
		case <-tick.C:
			c.check(ctx, p, ready)
		case <-c.now:
			c.check(ctx, p, ready)
		}
	}
}

// check runs one health check of p and delivers it, unless p turns out to
// be dying: then its exit is what the owner hears about.
func (c *Child) check(ctx context.Context, p Proc, ready time.Time) {
	if c.spec.Skip != nil && c.spec.Skip() {
		select {
		case <-p.Exited():
		default:
			c.deliver(ctx, Event{Kind: Health, Proc: p, RSS: p.RSS()})
		}
		return
	}
	// A process that exits while it is asked ends the question: its exit
	// is handled now, not after HealthTimeout.
	hctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-p.Exited():
			cancel()
		case <-hctx.Done():
		}
	}()
	st, err := p.Health(hctx)
	cancel()
	if err != nil {
		// A process that is dying fails its check too: let its exit be
		// reaped and handled (and counted as a crash) rather than have
		// it killed for the check.
		if exitedWithin(p, c.spec.Policy.ExitGrace) {
			return
		}
	}
	if err == nil && c.spec.Restart {
		c.loop.ResetIfStable(ready, time.Now())
	}
	c.deliver(ctx, Event{Kind: Health, Proc: p, Err: err, Stats: st, RSS: p.RSS(), Probed: true})
}

// stop ends p because Run's context ended.
func (c *Child) stop(p Proc) {
	sctx, cancel := context.WithTimeout(context.Background(), c.spec.Policy.StopTimeout)
	defer cancel()
	p.Stop(sctx)
	select {
	case <-p.Exited():
	case <-sctx.Done():
	}
}

func (c *Child) deliver(ctx context.Context, ev Event) {
	if ctx.Err() == nil {
		c.spec.On(ev)
	}
}

// exitedWithin says p exits within d (at once, for d <= 0).
func exitedWithin(p Proc, d time.Duration) bool {
	select {
	case <-p.Exited():
		return true
	default:
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.Exited():
		return true
	case <-t.C:
		return false
	}
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
