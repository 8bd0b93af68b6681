package integration

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestFullQueue: with the worker busy and the queue full, the next request
// is refused at once with 503 and Retry-After, the admin listener still
// answers, and the requests already admitted are served.
func TestFullQueue(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers   = 1
  max_queue     = 1
  queue_timeout = "10s"
}
`)
	busy := make(chan result, 1)
	go func() { busy <- l.get("/demo/sleep?ms=3000") }()
	waitFor(t, "the worker to be busy", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })
	queued := make(chan result, 1)
	go func() { queued <- l.get("/demo/sleep?ms=10") }()
	waitFor(t, "one request to be queued", 5*time.Second, func() bool { return l.lane(t, "default").Queued == 1 })

	r := l.get("/")
	if r.err != nil || r.status != http.StatusServiceUnavailable {
		t.Fatalf("GET / with the queue full: want 503, got %s", r)
	}
	if r.took > time.Second {
		t.Errorf("503 took %v; a full queue must refuse at once", r.took)
	}
	checkRetryAfter(t, r)

	// The admin listener is not behind the lane.
	st, err := l.tryStatus()
	if err != nil {
		t.Fatalf("admin while the lane is saturated: %v", err)
	}
	if ls := laneOf(t, st, "default"); ls.Rejected < 1 {
		t.Errorf("status: rejected=%d; want ≥ 1", ls.Rejected)
	}

	if r := <-busy; r.err != nil || r.status != 200 {
		t.Errorf("the request occupying the worker: %s", r)
	}
	if r := <-queued; r.err != nil || r.status != 200 {
		t.Errorf("the queued request: %s", r)
	}
}

// TestQueueTimeout: a request that waits longer than queue_timeout for a
// worker gets 503 with Retry-After.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers   = 1
  max_queue     = 10
  queue_timeout = "300ms"
}
`)
	busy := make(chan result, 1)
	go func() { busy <- l.get("/demo/sleep?ms=3000") }()
	waitFor(t, "the worker to be busy", 5*time.Second, func() bool { return l.lane(t, "default").Inflight == 1 })

	r := l.get("/")
	if r.err != nil || r.status != http.StatusServiceUnavailable {
		t.Fatalf("GET / behind a busy worker: want 503, got %s", r)
	}
	if r.took < 300*time.Millisecond || r.took > 2500*time.Millisecond {
		t.Errorf("503 after %v; want after queue_timeout (300ms) and well before the busy request ends (3s)", r.took)
	}
	checkRetryAfter(t, r)
	if ls := l.lane(t, "default"); ls.Rejected < 1 {
		t.Errorf("status: rejected=%d; want ≥ 1", ls.Rejected)
	}
	if r := <-busy; r.err != nil || r.status != 200 {
		t.Errorf("the request occupying the worker: %s", r)
	}
}

func checkRetryAfter(t *testing.T, r result) {
	t.Helper()
	ra := r.header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < 0 {
		if _, err := http.ParseTime(ra); err != nil {
			t.Errorf("503 without a valid Retry-After header (got %q)", ra)
		}
	}
}
