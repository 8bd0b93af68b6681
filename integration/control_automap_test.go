package integration

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var queueTimingRE = regexp.MustCompile(`queue;dur=([0-9.]+)`)

// queueMS is the queue time a response's Server-Timing reports.
func queueMS(r result) float64 {
	m := queueTimingRE.FindStringSubmatch(r.header.Get("Server-Timing"))
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// parallelGets GETs every path at once and returns the answers in order.
func (l *lanesd) parallelGets(paths []string) []result {
	out := make([]result, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() { out[i] = l.get(p) })
	}
	wg.Wait()
	return out
}

// TestControlAutoMapLearns: the lane "default" has one worker running one
// request at a time.
//   - Fast requests queued past the threshold are never learned: auto_map
//     looks at filter + run, not at the queue.
//   - A request that runs past the threshold has its exact METHOD path
//     learned (source auto_map); later requests of that path, whatever
//     their query, go to the slow lane; other paths do not.
//   - A request that hits the hard timeout is learned although the
//     threshold is longer than the timeout.
func TestControlAutoMapLearns(t *testing.T) {
	t.Parallel()
	const lanes = `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers   = 1
  max_workers   = 1
  concurrency   = 1
  max_queue     = 100
  queue_timeout = "30s"
}
lane "strict" {
  min_workers     = 1
  request_timeout = "400ms"
  map             = ["GET /demo/hang"]
}
lane "slow" {
  min_workers = 1
}
`
	const autoMap = `
auto_map {
  threshold    = "700ms"
  lane         = "slow"
  from         = ["default", "strict"]
  forget_after = "10m"
}
`
	l := startLanesd(t, lanes+autoMap)
	// Queued but fast: 25 requests of 50 ms on one worker queue for up to
	// ~1.2 s, past the 700 ms threshold, while each runs 50 ms.
	paths := make([]string, 25)
	for i := range paths {
		paths[i] = "/demo/sleep/q?ms=50"
	}
	var maxQueue float64
	for _, r := range l.parallelGets(paths) {
		if r.err != nil || r.status != 200 {
			t.Fatalf("queued request: %s", r)
		}
		maxQueue = max(maxQueue, queueMS(r))
	}
	if maxQueue < 700 {
		t.Fatalf("the longest queue time was %.0f ms, under the threshold: the test did not queue past it", maxQueue)
	}
	t.Logf("fast requests queued up to %.0f ms", maxQueue)
	if ls := learned(l.mappings(t)); len(ls) != 0 {
		t.Fatalf("fast requests that only queued were learned: %v", mappingKeys(ls))
	}
	if am := l.status(t).AutoMap; am == nil || am.Learned != 0 || am.Entries != 0 {
		t.Errorf("status auto_map after queued requests: %+v, want nothing learned", am)
	}
	l.wantLane(t, "/demo/sleep/q?ms=1", "default")

	// Slow: learned, exact path, query ignored.
	if r := l.mustGet(t, "/demo/sleep/report?ms=900", 200); r.header.Get("X-Lane") != "default" {
		t.Fatalf("the first slow request went to %q", r.header.Get("X-Lane"))
	}
	waitFor(t, "GET /demo/sleep/report to be learned", 5*time.Second, func() bool {
		_, ok := findMapping(l.mappings(t), "GET", "/demo/sleep/report")
		return ok
	})
	m, _ := findMapping(l.mappings(t), "GET", "/demo/sleep/report")
	if m.Lane != "slow" || m.Source != "auto_map" || !m.Dynamic {
		t.Errorf("learned mapping %+v: want lane slow, source auto_map, dynamic", m)
	}
	l.wantLane(t, "/demo/sleep/report?ms=1", "slow")
	l.wantLane(t, "/demo/sleep/report?ms=1&other=query", "slow")
	l.wantLane(t, "/demo/sleep/report/x?ms=1", "default") // exact path only
	l.wantLane(t, "/demo/sleep/q?ms=1", "default")
	if n := l.Log.Count("auto_map: learned mapping"); n != 1 {
		t.Errorf("the log has %d \"learned mapping\" lines, want 1", n)
	}

	// Hard timeout (400 ms) under a 700 ms threshold: learned too.
	if r := l.get("/demo/hang"); r.err != nil || r.status != 504 {
		t.Fatalf("GET /demo/hang: want 504, got %s", r)
	}
	waitFor(t, "GET /demo/hang to be learned", 5*time.Second, func() bool {
		m, ok := findMapping(l.mappings(t), "GET", "/demo/hang")
		return ok && m.Source == "auto_map" && m.Lane == "slow"
	})
	if am := l.status(t).AutoMap; am == nil || am.Learned != 2 || am.Entries != 2 {
		t.Errorf("status auto_map: %+v, want 2 learned, 2 entries", am)
	}

	// A learned mapping can be removed like a runtime one.
	if code, out := l.lanectl(t, "unmap", "GET /demo/sleep/report"); code != 0 {
		t.Errorf("lanectl unmap of a learned mapping: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/sleep/report?ms=1", "default")
	if am := l.status(t).AutoMap; am == nil || am.Entries != 1 {
		t.Errorf("status auto_map after unmapping a learned mapping: %+v, want 1 entry", am)
	}

	// Learned mappings survive a reload that keeps auto_map, and go with
	// one that removes it.
	l.reload(t)
	if m, ok := findMapping(l.mappings(t), "GET", "/demo/hang"); !ok || m.Source != "auto_map" {
		t.Errorf("learned mapping after a reload: %+v (found %v)", m, ok)
	}
	l.writeConfig(t, lanes)
	if res := l.reload(t); !strings.Contains(strings.Join(res.Changed, "\n"), "dropped learned mapping GET /demo/hang") {
		t.Errorf("reload without auto_map does not say it dropped the learned mapping: %q", res.Changed)
	}
	if ls := learned(l.mappings(t)); len(ls) != 0 {
		t.Errorf("learned mappings after auto_map was removed: %v", mappingKeys(ls))
	}
	if am := l.status(t).AutoMap; am != nil {
		t.Errorf("status auto_map after it was removed: %+v", am)
	}
}

// TestControlAutoMapForgetsAndBounds: with forget_after = 2s, a learned
// mapping whose requests turn fast is forgotten, one not hit is forgotten,
// one that stays slow is kept; with max_entries = 5 a flood of 30 distinct
// slow URLs leaves at most 5 learned, and the evictions are counted in
// status and metrics.
func TestControlAutoMapForgetsAndBounds(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 1
  max_workers = 1
  concurrency = 40
}
lane "slow" {
  min_workers = 1
  concurrency = 40
}
auto_map {
  threshold    = "300ms"
  lane         = "slow"
  forget_after = "2s"
  max_entries  = 5
}
`)
	// stays-slow four times at once: learned once, with one log line.
	for _, r := range l.parallelGets([]string{"/demo/sleep/turns-fast?ms=400", "/demo/sleep/stays-slow?ms=400", "/demo/sleep/not-hit?ms=400",
		"/demo/sleep/stays-slow?ms=400", "/demo/sleep/stays-slow?ms=400", "/demo/sleep/stays-slow?ms=400"}) {
		if r.err != nil || r.status != 200 {
			t.Fatalf("slow request: %s", r)
		}
	}
	waitFor(t, "3 learned mappings", 5*time.Second, func() bool { return len(learned(l.mappings(t))) == 3 })
	if n := strings.Count(l.Log.String(), "learned mapping: pattern=\"GET /demo/sleep/stays-slow\""); n != 1 {
		t.Errorf("4 concurrent slow requests of one path logged %d \"learned mapping\" lines, want 1:\n%s", n, grepLines(l.Log.String(), "learned mapping"))
	}
	// Learning that follows learning is compiled a few ms later (paced).
	waitFor(t, "turns-fast to go to the slow lane", 2*time.Second, func() bool {
		return l.laneOf(t, "/demo/sleep/turns-fast?ms=1") == "slow"
	})

	// For a while, turns-fast is hit fast and stays-slow slow.
	var fastLanes []string
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		rs := l.parallelGets([]string{"/demo/sleep/turns-fast?ms=1", "/demo/sleep/stays-slow?ms=350"})
		for _, r := range rs {
			if r.err != nil || r.status != 200 {
				t.Fatalf("request: %s", r)
			}
		}
		fastLanes = append(fastLanes, rs[0].header.Get("X-Lane"))
		ms := l.mappings(t)
		_, fastKept := findMapping(ms, "GET", "/demo/sleep/turns-fast")
		_, notHitKept := findMapping(ms, "GET", "/demo/sleep/not-hit")
		if !fastKept && !notHitKept {
			break
		}
	}
	ms := l.mappings(t)
	if m, ok := findMapping(ms, "GET", "/demo/sleep/turns-fast"); ok {
		t.Errorf("mapping turned fast still there after %s: %+v", "8s", m)
	}
	if m, ok := findMapping(ms, "GET", "/demo/sleep/not-hit"); ok {
		t.Errorf("mapping not hit still there: %+v", m)
	}
	if m, ok := findMapping(ms, "GET", "/demo/sleep/stays-slow"); !ok || m.Lane != "slow" {
		t.Errorf("mapping that stays slow was forgotten (found %v: %+v)", ok, m)
	}
	l.wantLane(t, "/demo/sleep/turns-fast?ms=1", "default")
	log := l.Log.String()
	for _, s := range []string{"forgot learned mapping", "not slow for 2s", "not hit for 2s"} {
		if !strings.Contains(log, s) {
			t.Errorf("the log does not say %q", s)
		}
	}
	if am := l.status(t).AutoMap; am == nil || am.Forgotten < 2 {
		t.Errorf("status auto_map: %+v, want forgotten ≥ 2", am)
	}
	t.Logf("turns-fast answered by %v", fastLanes)

	// A flood of distinct slow URLs.
	flood := make([]string, 30)
	for i := range flood {
		flood[i] = fmt.Sprintf("/demo/sleep/flood-%d?ms=350", i)
	}
	for _, r := range l.parallelGets(flood) {
		if r.err != nil || r.status != 200 {
			t.Fatalf("flood request: %s", r)
		}
	}
	ms = l.mappings(t)
	if n := len(learned(ms)); n > 5 || n == 0 {
		t.Errorf("after a flood of 30 slow URLs, %d learned mappings, want 1..5: %v", n, mappingKeys(learned(ms)))
	}
	am := l.status(t).AutoMap
	if am == nil || am.Entries > 5 || am.Evicted < 25 || am.Learned < 33 {
		t.Errorf("status auto_map after the flood: %+v; want entries ≤ 5, evicted ≥ 25, learned ≥ 33", am)
	}
	if m := regexp.MustCompile(`(?m)^lanes_automap_evicted_total (\d+)`).FindStringSubmatch(l.metricsText(t)); m == nil {
		t.Errorf("/metrics has no lanes_automap_evicted_total")
	} else if n, _ := strconv.Atoi(m[1]); uint64(n) != am.Evicted {
		t.Errorf("lanes_automap_evicted_total %d, status says %d", n, am.Evicted)
	}
}
