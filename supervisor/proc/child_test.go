package proc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared"
)

// childProc is a process without a process, for the Child's rules.
type childProc struct {
	pid      int
	startErr error
	// health answers a check; nil: healthy.
	health func(p *childProc) error
	exited chan struct{}
	once   sync.Once
	stops  atomic.Int32
	checks atomic.Int32
}

func newChildProc(pid int) *childProc { return &childProc{pid: pid, exited: make(chan struct{})} }

func (p *childProc) Start(context.Context) error {
	if p.startErr != nil {
		p.end()
	}
	return p.startErr
}
func (p *childProc) end()                             { p.once.Do(func() { close(p.exited) }) }
func (p *childProc) PID() int                         { return p.pid }
func (p *childProc) Exited() <-chan struct{}          { return p.exited }
func (p *childProc) ExitErr() string                  { return "exit status 3" }
func (p *childProc) Signaled() (syscall.Signal, bool) { return 0, false }
func (p *childProc) Kill()                            { p.end() }
func (p *childProc) Stop(context.Context)             { p.stops.Add(1); p.end() }
func (p *childProc) RSS() int64                       { return int64(p.pid) << 20 }
func (p *childProc) Health(ctx context.Context) (shared.WorkerStats, error) {
	p.checks.Add(1)
	if p.health != nil {
		if err := p.health(p); err != nil {
			return shared.WorkerStats{}, err
		}
	}
	return shared.WorkerStats{PID: p.pid, Goroutines: 7}, nil
}

// testPolicy checks health only when asked (CheckNow) and trusts no
// process by its age.
var testPolicy = Policy{
	HealthInterval: time.Hour,
	StableAfter:    time.Hour,
	BackoffBase:    time.Millisecond,
	BackoffMax:     4 * time.Millisecond,
	LoopAt:         3,
	ExitGrace:      time.Hour,
	StopTimeout:    time.Second,
}

// recorder keeps a child's events and lets a test wait for them.
type recorder struct {
	ch chan Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan Event, 100)} }

func (r *recorder) on(ev Event) { r.ch <- ev }

func (r *recorder) next(t *testing.T, want EventKind) Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		if ev.Kind != want {
			t.Fatalf("event %v (%+v); want %v", ev.Kind, ev, want)
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("no %v event", want)
	}
	return Event{}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-r.ch:
		t.Errorf("unexpected event %v: %+v", ev.Kind, ev)
	default:
	}
}

func runChild(ctx context.Context, spec ChildSpec) (*Child, chan struct{}) {
	c := NewChild(spec)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	return c, done
}

func waitDone(t *testing.T, done chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A child without Restart follows one process: its start, its health
// checks (asked, or skipped with only its size read), its exit; then Run
// returns. The events come in that order.
func TestChildOneLife(t *testing.T) {
	p := newChildProc(5)
	skip := atomic.Bool{}
	r := newRecorder()
	c, done := runChild(context.Background(), ChildSpec{Policy: testPolicy, New: func() Proc { return p }, Skip: skip.Load, On: r.on})
	if ev := r.next(t, Started); ev.Proc != p || ev.RSS != 5<<20 {
		t.Errorf("started: %+v", ev)
	}
	if c.Proc() != p {
		t.Error("Proc is not the running process")
	}
	c.CheckNow()
	if ev := r.next(t, Health); !ev.Probed || ev.Err != nil || ev.Stats.Goroutines != 7 || ev.RSS != 5<<20 {
		t.Errorf("health: %+v", ev)
	}
	skip.Store(true)
	c.CheckNow()
	if ev := r.next(t, Health); ev.Probed || ev.RSS != 5<<20 {
		t.Errorf("skipped health check: %+v", ev)
	}
	if n := p.checks.Load(); n != 1 {
		t.Errorf("the process was asked %d times; want once (the second check was skipped)", n)
	}
	p.end()
	if ev := r.next(t, Exited); !ev.Early || ev.Backoff != 0 || ev.Uptime <= 0 {
		t.Errorf("exited: %+v", ev)
	}
	waitDone(t, done)
	r.none(t)
}

// A failed start is the last event of its process: Failed, early, and no
// Exited.
func TestChildFailedStart(t *testing.T) {
	p := newChildProc(6)
	p.startErr = errors.New("no handshake")
	r := newRecorder()
	_, done := runChild(context.Background(), ChildSpec{Policy: testPolicy, New: func() Proc { return p }, On: r.on})
	if ev := r.next(t, Failed); ev.Err != p.startErr || !ev.Early {
		t.Errorf("failed: %+v", ev)
	}
	waitDone(t, done)
	r.none(t)
}

// A check that fails because the process is dying is not reported (its
// exit is, and counts as a crash, not as a kill); one that fails while
// the process lives on is.
func TestChildFailedCheck(t *testing.T) {
	p := newChildProc(7)
	dying := atomic.Bool{}
	p.health = func(p *childProc) error {
		if dying.Load() {
			p.end()
			return errors.New("connection reset")
		}
		return errors.New("deadline exceeded")
	}
	pol := testPolicy
	pol.ExitGrace = 0 // report a failure of a live process at once
	r := newRecorder()
	c, done := runChild(context.Background(), ChildSpec{Policy: pol, New: func() Proc { return p }, On: r.on})
	r.next(t, Started)
	c.CheckNow()
	if ev := r.next(t, Health); ev.Err == nil || !ev.Probed {
		t.Errorf("a live process failing its check: %+v", ev)
	}
	dying.Store(true)
	c.CheckNow()
	r.next(t, Exited) // no Health event before it
	waitDone(t, done)
	r.none(t)
}

// The owner may call the child and its process from its handler: a
// Started handler that kills the process gets its Exited next.
func TestChildHandlerKills(t *testing.T) {
	p := newChildProc(8)
	r := newRecorder()
	var c *Child
	c = NewChild(ChildSpec{Policy: testPolicy, New: func() Proc { return p }, On: func(ev Event) {
		r.on(ev)
		if ev.Kind == Started {
			c.CheckNow()
			ev.Proc.Kill()
		}
	}})
	done := make(chan struct{})
	go func() { defer close(done); c.Run(context.Background()) }()
	r.next(t, Started)
	// The check asked for before the kill may run or find the process
	// gone; either way Exited is the last event.
	for {
		ev := <-r.ch
		if ev.Kind == Exited {
			break
		}
		if ev.Kind != Health {
			t.Fatalf("event %v before Exited", ev.Kind)
		}
	}
	waitDone(t, done)
}

// A restarting child replaces its process after every death; early ones
// back off as the CrashLoop says (0, then base·2^(n-2) up to the cap),
// and deaths of processes that had become stable start the next at once.
func TestChildRestartBacksOff(t *testing.T) {
	for _, tc := range []struct {
		stable time.Duration
		want   []time.Duration
	}{
		{time.Hour, []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}},
		{0, []time.Duration{0, 0, 0, 0, 0}},
	} {
		t.Run(fmt.Sprint("stable_after=", tc.stable), func(t *testing.T) {
			pol := testPolicy
			pol.StableAfter = tc.stable
			var n atomic.Int32
			r := newRecorder()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, done := runChild(ctx, ChildSpec{Policy: pol, Restart: true, New: func() Proc {
				return newChildProc(100 + int(n.Add(1)))
			}, On: func(ev Event) {
				r.on(ev)
				if ev.Kind == Started {
					ev.Proc.Kill() // it dies right after its start
				}
			}})
			for i, want := range tc.want {
				st := r.next(t, Started)
				ex := r.next(t, Exited)
				if ex.Proc != st.Proc || st.Proc.PID() != 101+i {
					t.Fatalf("death %d: process %d started, %d exited; want %d", i+1, st.Proc.PID(), ex.Proc.PID(), 101+i)
				}
				if ex.Backoff != want || ex.Early != (tc.stable > 0) {
					t.Errorf("death %d: backoff %v early %v; want %v", i+1, ex.Backoff, ex.Early, want)
				}
			}
			cancel()
			waitDone(t, done)
		})
	}
}

// A restarting child's failed starts back off too.
func TestChildRestartFailedStarts(t *testing.T) {
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := runChild(ctx, ChildSpec{Policy: testPolicy, Restart: true, New: func() Proc {
		p := newChildProc(9)
		p.startErr = errors.New("exec format error")
		return p
	}, On: r.on})
	for i, want := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond} {
		if ev := r.next(t, Failed); ev.Backoff != want {
			t.Errorf("failure %d: backoff %v; want %v", i+1, ev.Backoff, want)
		}
	}
	cancel()
	waitDone(t, done)
}

// Hold keeps a restarting child from starting while it refuses, and says
// so each time; the start follows once it agrees.
func TestChildHold(t *testing.T) {
	var refusals atomic.Int32
	busy := errors.New("cache_dir in use")
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var made atomic.Int32
	_, done := runChild(ctx, ChildSpec{Policy: testPolicy, Restart: true,
		New: func() Proc { made.Add(1); return newChildProc(10) },
		Hold: func() error {
			if refusals.Add(1) <= 2 {
				return busy
			}
			return nil
		},
		On: r.on})
	for range 2 {
		if ev := r.next(t, Held); ev.Err != busy || ev.Backoff != testPolicy.BackoffMax {
			t.Errorf("held: %+v; want the error and a wait capped at BackoffMax", ev)
		}
	}
	r.next(t, Started)
	if n := made.Load(); n != 1 {
		t.Errorf("%d processes made; want 1 (none while held)", n)
	}
	cancel()
	waitDone(t, done)
}

// When Run's context ends, the running process is stopped gracefully and
// Run returns once it is gone; the owner hears nothing more.
func TestChildStopsOnCancel(t *testing.T) {
	p := newChildProc(11)
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	_, done := runChild(ctx, ChildSpec{Policy: testPolicy, Restart: true, New: func() Proc { return p }, On: r.on})
	r.next(t, Started)
	cancel()
	waitDone(t, done)
	if p.stops.Load() != 1 {
		t.Errorf("the process was stopped %d times; want once", p.stops.Load())
	}
	r.none(t)
}

// BenchmarkChildLife is what a Child costs one worker's life, without the
// process: start, the Started event, a kill from the handler, the Exited
// event. (A real worker's fork and handshake take milliseconds.)
func BenchmarkChildLife(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := newChildProc(i)
		c := NewChild(ChildSpec{Policy: WorkerPolicy, New: func() Proc { return p }, On: func(ev Event) {
			if ev.Kind == Started {
				ev.Proc.Kill()
			}
		}})
		c.Run(context.Background())
	}
}
