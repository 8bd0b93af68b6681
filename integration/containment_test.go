package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"
)

// replaced waits until lane has want ready workers and at least one of the
// pids in before is no longer among its workers; it returns the pids that
// left and those that came.
func replaced(t *testing.T, l *lanesd, lane string, before []int, want int, timeout time.Duration) (gone, added []int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("lane %s to replace a worker of %v and be back to %d ready", lane, before, want), timeout, func() bool {
		st, err := l.tryStatus()
		if err != nil {
			return false
		}
		ls := laneOf(t, st, lane)
		ready, all := ls.PIDs("ready"), ls.PIDs()
		gone, added = nil, nil
		for _, p := range before {
			if !contains(all, p) {
				gone = append(gone, p)
			}
		}
		for _, p := range ready {
			if !contains(before, p) {
				added = append(added, p)
			}
		}
		return len(gone) > 0 && len(added) > 0 && len(ready) == want
	})
	sort.Ints(gone)
	sort.Ints(added)
	return gone, added
}

// TestHungUpstreamSocket: a request whose upstream accepts and never answers
// gets 504 once the lane's request_timeout passes — not the app's 60 s
// upstream_timeout — its worker is killed and replaced, and the lane's other
// workers keep answering meanwhile.
func TestHungUpstreamSocket(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case "/ok":
			w.Write([]byte("ok\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })

	l := startLanesd(t, fmt.Sprintf(`
app {
  upstream         = %q
  upstream_timeout = "60s"
}
lane "default" {
  min_workers     = 3
  request_timeout = "1s"
}
`, up.URL))
	before := l.workerPIDs(t, "default")
	if len(before) != 3 {
		t.Fatalf("want 3 ready workers at start, got %v", before)
	}

	hung := make(chan result, 1)
	go func() { hung <- l.get("/hang") }()
	waitFor(t, "the /hang request to be in flight", 5*time.Second, func() bool {
		return l.lane(t, "default").Inflight == 1
	})

	// The other workers answer while one is stuck.
	var wg sync.WaitGroup
	oks := make([]result, 30)
	for i := range oks {
		wg.Go(func() { oks[i] = l.get("/ok") })
	}
	wg.Wait()
	for i, r := range oks {
		if r.err != nil || r.status != 200 {
			t.Errorf("GET /ok #%d during the hang: %s", i, r)
		}
	}

	r := <-hung
	if r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Fatalf("GET /hang: want 504, got %s", r)
	}
	if r.took < time.Second || r.took > 10*time.Second {
		t.Errorf("GET /hang answered after %v; want after request_timeout (1s) and long before upstream_timeout (60s)", r.took)
	}

	gone, added := replaced(t, l, "default", before, 3, 15*time.Second)
	t.Logf("504 after %v; worker(s) %v replaced by %v", r.took.Round(time.Millisecond), gone, added)
	for _, pid := range gone {
		waitFor(t, fmt.Sprintf("killed worker %d to be gone", pid), 5*time.Second, func() bool { return !alive(pid) })
	}
	ls := l.lane(t, "default")
	if ls.Timeouts < 1 || ls.Killed < 1 || ls.Respawns < 1 {
		t.Errorf("status: timeouts=%d killed=%d respawns=%d; want each ≥ 1", ls.Timeouts, ls.Killed, ls.Respawns)
	}
	l.mustGet(t, "/ok", 200)
}

// TestSpinningHandler: a handler burning CPU and ignoring cancellation is
// ended with its process: 504, the worker is replaced, the lane serves.
func TestSpinningHandler(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers     = 2
  request_timeout = "1s"
}
`)
	before := l.workerPIDs(t, "default")
	r := l.get("/demo/spin")
	if r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Fatalf("GET /demo/spin: want 504, got %s", r)
	}
	if r.took < time.Second || r.took > 10*time.Second {
		t.Errorf("GET /demo/spin answered after %v; want soon after request_timeout (1s)", r.took)
	}
	gone, added := replaced(t, l, "default", before, 2, 15*time.Second)
	t.Logf("spinning worker(s) %v replaced by %v", gone, added)
	for _, pid := range gone {
		waitFor(t, fmt.Sprintf("spinning worker %d to be gone", pid), 5*time.Second, func() bool { return !alive(pid) })
	}
	l.mustGet(t, "/", 200)
	if ls := l.lane(t, "default"); ls.Timeouts < 1 || ls.Killed < 1 {
		t.Errorf("status: timeouts=%d killed=%d; want each ≥ 1", ls.Timeouts, ls.Killed)
	}
}

const crashConfig = `
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`

// TestCrashingWorker: a worker that exits mid-request costs that request a
// 502; the worker is replaced and the lane serves on.
func TestCrashingWorker(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, crashConfig)
	before := l.workerPIDs(t, "default")
	r := l.get("/demo/crash")
	if r.err != nil || r.status != http.StatusBadGateway {
		t.Fatalf("GET /demo/crash: want 502, got %s", r)
	}
	gone, added := replaced(t, l, "default", before, 2, 15*time.Second)
	t.Logf("crashed worker(s) %v replaced by %v", gone, added)
	for _, pid := range gone {
		if alive(pid) {
			t.Errorf("crashed worker %d still alive", pid)
		}
	}
	ls := l.lane(t, "default")
	if ls.Respawns < 1 {
		t.Errorf("status: respawns=%d; want ≥ 1", ls.Respawns)
	}
	if ls.LastExit == "" {
		t.Errorf("status: last_exit is empty after a crash")
	}
	l.mustGet(t, "/", 200)
}

// TestCrashCostsOnlyItsRequest: the requests that follow a crash go to the
// lane's other worker (or a replacement), never to the dead one.
func TestCrashCostsOnlyItsRequest(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, crashConfig)
	// Whether the next request beats the supervisor's noticing the exit is
	// a race; a few rounds make losing it likely.
	for round := 1; round <= 5; round++ {
		// POST: a GET whose worker dies before answering is retried once
		// on another worker (TestRetryIdempotentOnce); a POST never is.
		r := do(l.client, http.MethodPost, l.URL("/demo/crash"), nil, nil)
		if r.err != nil || r.status != http.StatusBadGateway {
			t.Fatalf("round %d: GET /demo/crash: want 502, got %s", round, r)
		}
		for i := range 5 {
			if r := l.get("/"); r.err != nil || r.status != 200 {
				t.Errorf("round %d: GET / #%d right after a crash: want 200, got %s", round, i+1, r)
			}
		}
		waitFor(t, "the lane to have 2 ready workers again", 30*time.Second, func() bool {
			st, err := l.tryStatus()
			return err == nil && len(laneOf(t, st, "default").PIDs("ready")) == 2
		})
	}
}

// TestCrashLoop: workers crashing in quick succession show as a crash loop
// and back off; the lane recovers, and once it has, stops showing one.
func TestCrashLoop(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, crashConfig)
	// Each crash on a live worker: the next is sent once the crashed worker
	// has left the lane, a matter of milliseconds.
	for i := range 4 {
		r := l.get("/demo/crash")
		if r.err != nil || r.status != http.StatusBadGateway {
			t.Errorf("crash #%d: want 502, got %s", i+1, r)
		}
		waitFor(t, "the crashed worker to leave the lane", 10*time.Second, func() bool {
			for _, p := range l.lane(t, "default").PIDs() {
				if p > 0 && !alive(p) {
					return false
				}
			}
			return true
		})
	}
	ls := l.lane(t, "default")
	t.Logf("after 4 crashes: crash_loop=%v consecutive_crashes=%d backoff_ms=%d last_exit=%q respawns=%d",
		ls.CrashLoop, ls.Crashes, ls.BackoffMS, ls.LastExit, ls.Respawns)
	if !ls.CrashLoop || ls.Crashes < 3 {
		t.Errorf("after 4 quick crashes: crash_loop=%v consecutive_crashes=%d; want true and ≥ 3", ls.CrashLoop, ls.Crashes)
	}
	if ls.Respawns < 3 {
		t.Errorf("after 4 quick crashes: respawns=%d; want ≥ 3", ls.Respawns)
	}
	if ls.LastExit == "" {
		t.Errorf("after 4 quick crashes: last_exit is empty")
	}

	// The lane recovers: workers come back after the backoff and serve.
	waitFor(t, "the lane to have 2 ready workers again", 30*time.Second, func() bool {
		st, err := l.tryStatus()
		return err == nil && len(laneOf(t, st, "default").PIDs("ready")) == 2
	})
	l.mustGet(t, "/", 200)

	// Once its workers have stayed up (the lane's stability period is 10s),
	// the lane no longer shows a crash loop: the dashboard must not go on
	// reporting a problem that is over.
	recovered := time.Now()
	for {
		ls = l.lane(t, "default")
		if !ls.CrashLoop {
			t.Logf("crash_loop cleared %v after recovery", time.Since(recovered).Round(time.Millisecond))
			break
		}
		if time.Since(recovered) > 20*time.Second {
			t.Errorf("lane recovered (workers up and serving for 20s) but status still shows crash_loop=true consecutive_crashes=%d",
				ls.Crashes)
			break
		}
		if r := l.get("/"); r.err != nil || r.status != 200 {
			t.Fatalf("GET / after recovery: %s", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
