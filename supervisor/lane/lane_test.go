package lane

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/config"
)

func testLane() *Lane {
	return New(config.Lane{Name: "t", MinWorkers: 1, MaxWorkers: 1, Concurrency: 1}, Env{Log: hclog.NewNullLogger()})
}

// The first crash is replaced at once; later ones back off exponentially,
// capped, and three in a row are a crash loop.
func TestCrashBackoff(t *testing.T) {
	l := testLane()
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, w := range want {
		before := time.Now()
		l.crashLocked("exit status 2")
		got := l.crash.Until().Sub(before)
		if w == 0 {
			if !l.crash.Until().IsZero() {
				t.Errorf("crash %d: backoff %v, want none", i+1, got)
			}
			continue
		}
		if got < w || got > w+50*time.Millisecond {
			t.Errorf("crash %d: backoff %v, want %v", i+1, got, w)
		}
	}
	if st := l.Status(); !st.CrashLoop || st.Crashes != 5 || st.LastExit != "exit status 2" {
		t.Errorf("status after 5 crashes: crash_loop %v crashes %d last %q", st.CrashLoop, st.Crashes, st.LastExit)
	}
	for range 30 {
		l.crashLocked("x")
	}
	if got := time.Until(l.crash.Until()); got > l.policy.BackoffMax || got < l.policy.BackoffMax-time.Second {
		t.Errorf("after many crashes backoff is %v, want the cap %v", got, l.policy.BackoffMax)
	}
}

func TestPercentiles(t *testing.T) {
	var lat latency
	if p := lat.percentiles(); p.Count != 0 || p.P99 != 0 {
		t.Fatalf("empty: %+v", p)
	}
	for i := 1; i <= 100; i++ {
		lat.add(time.Duration(i) * time.Millisecond)
	}
	p := lat.percentiles()
	if p.Count != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 {
		t.Errorf("1..100 ms: %+v", p)
	}
	// The window keeps only the most recent requests.
	for range latencyWindow {
		lat.add(time.Millisecond)
	}
	if p := lat.percentiles(); p.Count != latencyWindow || p.Max != 1 {
		t.Errorf("after a window of 1 ms requests: %+v", p)
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{Starting: "starting", Ready: "ready", Retiring: "retiring", Killing: "killing", Stopping: "stopping", Dead: "dead"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}

// A worker keeps the request slots it was spawned with: a reload that
// raises the lane's concurrency must not hand an old worker more requests
// than its data client has connections for (they failed with "no free
// connections" while the reload's drain ran).
func TestWorkerKeepsItsConcurrency(t *testing.T) {
	l := testLane()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := &Worker{lane: l, state: Ready, conc: l.cfg.Concurrency}
	l.workers = append(l.workers, w)
	l.cfg.Concurrency = 8 // as Reconfigure sets it
	if !l.freeLocked(w) {
		t.Fatal("an idle worker is not free")
	}
	l.takeLocked(w)
	if l.freeLocked(w) {
		t.Errorf("a worker spawned with concurrency 1 is offered a second request after the lane's concurrency became 8")
	}
}

// Retry-After follows the lane's measured drain rate: a lane that moved
// 10 requests a second with 25 waiting asks for 3 s; a lane where nothing
// has left lately asks for its queue_timeout; never below 1 s.
func TestRetryAfter(t *testing.T) {
	l := New(config.Lane{Name: "t", MinWorkers: 1, MaxWorkers: 1, Concurrency: 1, MaxQueue: 100, QueueTimeout: 5 * time.Second}, Env{Log: hclog.NewNullLogger()})
	if got := l.RetryAfter(); got != 5 {
		t.Errorf("nothing drained yet: Retry-After %d, want the queue_timeout 5", got)
	}
	l.outflow = drainRate{}
	start := time.Now().Add(-10 * time.Second)
	for s := range 10 {
		for i := range 10 {
			l.outflow.add(start.Add(time.Duration(s)*time.Second + time.Duration(i)*100*time.Millisecond))
		}
	}
	l.outflow.roll(start.Add(10 * time.Second))
	if r := l.outflow.rate; r < 9 || r > 11 {
		t.Fatalf("rate %.2f after 10 s of 10/s, want about 10", r)
	}
	l.outflow.start = time.Now() // the bucket is current: RetryAfter does not roll it
	for range 25 {
		l.queue = append(l.queue, &waiter{})
	}
	if got := l.RetryAfter(); got != 3 {
		t.Errorf("25 waiting at 10/s: Retry-After %d, want 3", got)
	}
	l.queue = l.queue[:0]
	if got := l.RetryAfter(); got != 1 {
		t.Errorf("none waiting: Retry-After %d, want 1", got)
	}
}

// A lane keeps the newest stackFiles stack dumps of killed workers and
// removes older ones: a worker that hangs every minute must not fill the
// run directory's tmpfs over months.
func TestStackFilesCapped(t *testing.T) {
	l := testLane()
	dir := t.TempDir()
	var files []string
	for i := range stackFiles + 10 {
		f := filepath.Join(dir, fmt.Sprintf("stacks-t-%d.txt", i))
		if err := os.WriteFile(f, []byte("goroutine 1"), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		l.keepStacks(f)
	}
	for i, f := range files {
		_, err := os.Stat(f)
		if kept := err == nil; kept != (i >= 10) {
			t.Errorf("%s: kept %v, want %v", filepath.Base(f), kept, i >= 10)
		}
	}
}
