package integration

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// active counts a lane's starting and ready workers.
func active(ls *api.Lane) int { return len(ls.PIDs("starting", "ready")) }

// waitSize waits until lane has min..max as its sizes and want ready
// workers (and no starting one).
func (l *lanesd) waitSize(t *testing.T, lane string, lo, hi, want int) {
	t.Helper()
	var last *api.Lane
	waitFor(t, fmt.Sprintf("lane %s to be %d..%d with %d ready workers", lane, lo, hi, want), 15*time.Second, func() bool {
		last = l.lane(t, lane)
		return last.MinWorkers == lo && last.MaxWorkers == hi && len(last.PIDs("ready")) == want && len(last.PIDs("starting")) == 0 &&
			len(last.Workers) == want
	})
}

// TestControlDynamicLane: a lane of 1..4 workers, one request each, grows
// under a burst (and says so at debug level), serves every request, and
// shrinks back to min_workers once its extra workers have been idle for
// idle_timeout.
func TestControlDynamicLane(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
log {
  level = "debug"
}
app {
  demo = true
}
lane "default" {
  min_workers   = 1
  max_workers   = 4
  concurrency   = 1
  idle_timeout  = "1s"
  queue_timeout = "20s"
}
`)
	l.waitSize(t, "default", 1, 4, 1)
	paths := make([]string, 8)
	for i := range paths {
		paths[i] = "/demo/sleep?ms=700"
	}
	done := make(chan []result, 1)
	go func() { done <- l.parallelGets(paths) }()
	peak := 0
	var rs []result
	for rs == nil {
		select {
		case rs = <-done:
		case <-time.After(20 * time.Millisecond):
			peak = max(peak, active(l.lane(t, "default")))
		}
	}
	for _, r := range rs {
		if r.err != nil || r.status != 200 {
			t.Errorf("burst request: %s", r)
		}
	}
	if peak < 2 || peak > 4 {
		t.Errorf("during the burst the lane had at most %d workers; want it to grow, within max_workers 4", peak)
	}
	t.Logf("peak %d workers", peak)
	if !strings.Contains(l.Log.String(), "growing") {
		t.Errorf("the debug log does not show the decision to grow")
	}
	l.waitSize(t, "default", 1, 4, 1)
	if !strings.Contains(l.Log.String(), "shrinking: worker idle") {
		t.Errorf("the debug log does not show the decision to shrink")
	}
}

// TestControlSignalsResize: SIGTTIN and SIGTTOU add and remove a worker
// of the default lane: they move min_workers, max_workers with it where
// needed, and never go below one worker.
func TestControlSignalsResize(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers  = 1
  max_workers  = 3
  idle_timeout = "500ms"
}
lane "other" {
  min_workers = 1
  map         = ["GET /other/*"]
}
`)
	l.waitSize(t, "default", 1, 3, 1)
	steps := []struct {
		sig            syscall.Signal
		lo, hi, active int
	}{
		{syscall.SIGTTIN, 2, 3, 2},
		{syscall.SIGTTIN, 3, 3, 3},
		{syscall.SIGTTIN, 4, 4, 4}, // max moves with min
		{syscall.SIGTTOU, 3, 3, 3}, // a fixed-size lane stays fixed
		{syscall.SIGTTOU, 2, 2, 2},
		{syscall.SIGTTOU, 1, 1, 1},
		{syscall.SIGTTOU, 1, 1, 1}, // never below 1
	}
	for i, s := range steps {
		handled := l.Log.Count("resized by signal")
		l.signal(t, s.sig)
		// Wait until lanesd has handled the signal (even one that changes
		// nothing, as the last), then for the workers.
		waitFor(t, fmt.Sprintf("step %d handled", i), 10*time.Second, func() bool { return l.Log.Count("resized by signal") > handled })
		l.waitSize(t, "default", s.lo, s.hi, s.active)
		l.mustGet(t, "/", 200)
	}
	if ls := l.lane(t, "other"); ls.MinWorkers != 1 || len(ls.PIDs("ready")) != 1 {
		t.Errorf("SIGTTIN/SIGTTOU changed lane other: %d..%d, %d ready", ls.MinWorkers, ls.MaxWorkers, len(ls.PIDs("ready")))
	}
}

// TestControlSignalTTOUNow: SIGTTOU on a lane with room above min_workers
// takes a worker away now (as gunicorn's TTOU does), not once it has been
// idle for idle_timeout.
func TestControlSignalTTOUNow(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers  = 3
  max_workers  = 5
  idle_timeout = "10m"
}
`)
	l.waitSize(t, "default", 3, 5, 3)
	start := time.Now()
	l.signal(t, syscall.SIGTTOU)
	l.waitSize(t, "default", 2, 5, 2)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("SIGTTOU took %v to remove a worker", d)
	}
	l.mustGet(t, "/", 200)
}

// TestControlResize: POST /api/lanes/NAME/resize and lanectl resize grow
// and shrink a lane; shrinking lets busy workers finish what they run; a
// refused resize changes nothing.
func TestControlResize(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "pool" {
  min_workers = 2
  max_workers = 2
  concurrency = 1
  map         = ["GET /demo/sleep/pool*"]
}
`)
	l.waitSize(t, "pool", 2, 2, 2)
	if res := l.resize(t, "pool", api.ResizeRequest{MinWorkers: new(4)}); res.Lane != "pool" || res.MinWorkers != 4 || res.MaxWorkers != 4 {
		t.Errorf("resize answer %+v: want lane pool, 4..4", res)
	}
	l.waitSize(t, "pool", 4, 4, 4)

	code, out := l.lanectl(t, "resize", "pool", "1", "2")
	if code != 0 || !strings.Contains(out, "pool") {
		t.Fatalf("lanectl resize pool 1 2: exit %d:\n%s", code, out)
	}
	l.waitSize(t, "pool", 1, 2, 2)

	// Shrink while every worker is busy: nothing in flight is cut.
	if code, out := l.lanectl(t, "resize", "pool", "4", "4"); code != 0 {
		t.Fatalf("lanectl resize pool 4 4: exit %d:\n%s", code, out)
	}
	l.waitSize(t, "pool", 4, 4, 4)
	paths := make([]string, 4)
	for i := range paths {
		paths[i] = "/demo/sleep/pool?ms=1500"
	}
	done := make(chan []result, 1)
	go func() { done <- l.parallelGets(paths) }()
	waitFor(t, "4 requests in flight on pool", 5*time.Second, func() bool { return l.lane(t, "pool").Inflight == 4 })
	l.resize(t, "pool", api.ResizeRequest{MinWorkers: new(1), MaxWorkers: new(1)})
	ls := l.lane(t, "pool")
	if n := len(ls.PIDs("retiring")); n != 3 {
		t.Errorf("right after shrinking 4 busy workers to 1: %d retiring, want 3 (%+v)", n, ls.Workers)
	}
	for _, r := range <-done {
		if r.err != nil || r.status != 200 || r.header.Get("X-Lane") != "pool" {
			t.Errorf("request in flight across the shrink: %s (lane %q)", r, r.header.Get("X-Lane"))
		}
	}
	l.waitSize(t, "pool", 1, 1, 1)

	// Refusals change nothing.
	before := l.lane(t, "pool")
	var lastEvent uint64
	if es := l.events(t, 0); len(es) > 0 {
		lastEvent = es[len(es)-1].ID
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
	}{
		{"unknown lane", "/api/lanes/nope/resize", `{"min_workers": 2}`, 404},
		{"min above max", "/api/lanes/pool/resize", `{"min_workers": 3, "max_workers": 2}`, 400},
		{"negative", "/api/lanes/pool/resize", `{"min_workers": -1}`, 400},
		{"max zero", "/api/lanes/pool/resize", `{"max_workers": 0}`, 400},
		{"default below 1", "/api/lanes/default/resize", `{"min_workers": 0}`, 400},
		{"absurd max", "/api/lanes/pool/resize", `{"max_workers": 100000}`, 400},
		{"empty object", "/api/lanes/pool/resize", `{}`, 400},
		{"no body", "/api/lanes/pool/resize", ``, 400},
		{"not JSON", "/api/lanes/pool/resize", `min=2`, 400},
		{"string count", "/api/lanes/pool/resize", `{"min_workers": "2"}`, 400},
		{"unknown field", "/api/lanes/pool/resize", `{"workers": 2}`, 400},
	} {
		r := l.adminCall(http.MethodPost, tc.path, tc.body)
		checkErrorBody(t, tc.name, r)
		if r.status != tc.code {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.code, r.body)
		}
	}
	checkErrorBody(t, "GET resize", l.adminCall(http.MethodGet, "/api/lanes/pool/resize", nil))
	for _, args := range [][]string{{"resize", "nope", "2"}, {"resize", "pool", "3", "1"}, {"resize", "pool", "x"}, {"resize", "pool", "0", "0"}} {
		if code, out := l.lanectl(t, args...); code == 0 {
			t.Errorf("lanectl %q: exit 0, want a failure:\n%s", args, out)
		} else if args[1] == "nope" && !strings.Contains(out, `no lane "nope"`) {
			t.Errorf("lanectl %q does not print the server's error:\n%s", args, out)
		}
	}
	// A refused call is refused before anything changes: no resize event.
	for _, e := range l.events(t, lastEvent) {
		if e.Kind == "resize" {
			t.Errorf("a refused resize left an event: %+v", e)
		}
	}
	after := l.lane(t, "pool")
	if after.MinWorkers != before.MinWorkers || after.MaxWorkers != before.MaxWorkers || fmt.Sprint(after.PIDs()) != fmt.Sprint(before.PIDs()) {
		t.Errorf("refused resizes changed lane pool: %d..%d %v -> %d..%d %v", before.MinWorkers, before.MaxWorkers, before.PIDs(),
			after.MinWorkers, after.MaxWorkers, after.PIDs())
	}
	if ls := l.lane(t, "default"); ls.MinWorkers != 1 || len(ls.PIDs()) != 1 {
		t.Errorf("refused resizes changed lane default: %d..%d %v", ls.MinWorkers, ls.MaxWorkers, ls.PIDs())
	}
}

// TestControlScaleToZero: a lane resized to min_workers 0 stops its idle
// workers after idle_timeout, and a request to it starts one again and is
// served.
func TestControlScaleToZero(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "rare" {
  min_workers  = 1
  max_workers  = 2
  idle_timeout = "500ms"
  map          = ["GET /demo/sleep/rare"]
}
`)
	code, out := l.lanectl(t, "resize", "rare", "0")
	if code != 0 {
		t.Fatalf("lanectl resize rare 0: exit %d:\n%s", code, out)
	}
	l.waitSize(t, "rare", 0, 2, 0)
	for range 2 {
		l.wantLane(t, "/demo/sleep/rare?ms=1", "rare")
		l.waitSize(t, "rare", 0, 2, 0)
	}
	// Several at once on an empty lane: it starts workers for them.
	for _, r := range l.parallelGets([]string{"/demo/sleep/rare?ms=200", "/demo/sleep/rare?ms=200", "/demo/sleep/rare?ms=200"}) {
		if r.err != nil || r.status != 200 {
			t.Errorf("request to a lane scaled to zero: %s", r)
		}
	}
}
