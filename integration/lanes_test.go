package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestCustomWorker: a lane whose command is a program built on
// worker.Serve serves its mapped paths; the built-in app serves the rest.
func TestCustomWorker(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, fmt.Sprintf(`
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "hello" {
  min_workers = 2
  command     = [%q]
  map         = ["GET /hello*"]
}
`, helloBin))
	for _, path := range []string{"/hello/x", "/hello", "/hellothere?q=1"} {
		r := l.mustGet(t, path, 200)
		if !strings.Contains(string(r.body), "lane hello") {
			t.Errorf("GET %s: not answered by hello-worker: %q", path, r.body)
		}
	}
	r := l.mustGet(t, "/", 200)
	if strings.Contains(string(r.body), "hello from pid") {
		t.Errorf("GET / answered by hello-worker, want the demo app: %q", r.body)
	}
	// A path the pattern does not cover goes to the default lane.
	if r := l.get("/hel"); r.err != nil || strings.Contains(string(r.body), "hello from pid") {
		t.Errorf("GET /hel: %s; want the demo app", r)
	}
	if ls := l.lane(t, "hello"); ls.Served < 3 {
		t.Errorf("lane hello served %d, want ≥ 3", ls.Served)
	}
}

// TestDebugHeaders: with debug_headers, each response names its lane and
// carries the partial times.
func TestDebugHeaders(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "slow" {
  min_workers = 1
  map         = ["GET /demo/sleep*"]
}
`)
	for path, lane := range map[string]string{"/": "default", "/demo/sleep?ms=20": "slow"} {
		r := l.mustGet(t, path, 200)
		if got := r.header.Get("X-Lane"); got != lane {
			t.Errorf("GET %s: X-Lane %q, want %q", path, got, lane)
		}
		st := r.header.Get("Server-Timing")
		for _, m := range []string{"queue", "filter", "run", "total"} {
			if !strings.Contains(st, m+";dur=") {
				t.Errorf("GET %s: Server-Timing %q has no %s;dur=", path, st, m)
			}
		}
	}
}
