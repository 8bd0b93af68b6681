package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

func findEvent(es []api.Event, kind, lane, path string) (api.Event, bool) {
	for _, e := range es {
		if e.Kind == kind && e.Lane == lane && (path == "" || e.Path == path) {
			return e, true
		}
	}
	return api.Event{}, false
}

// TestAdminRequestsAndEvents: GET /api/requests shows a hung request with
// its lane, worker, client, elapsed time and time left; once the hard
// timeout kills its worker, GET /api/events has the kill, the auto_map
// learning, and then a resize, a drain and a reload, in id order; since=ID
// returns only what came after.
func TestAdminRequestsAndEvents(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers     = 1
  max_workers     = 2
  request_timeout = "2s"
}
lane "slow" {
  min_workers = 1
  max_workers = 2
}
auto_map {
  threshold = "1s"
  lane      = "slow"
  from      = ["default"]
}
`)
	done := make(chan result, 1)
	go func() { done <- l.get("/demo/hang") }()
	var got []api.InflightRequest
	waitFor(t, "the hung request in /api/requests", 10*time.Second, func() bool {
		got, _ = l.API.Requests(context.Background())
		return len(got) == 1 && got[0].Elapsed >= 0.5
	})
	h := got[0]
	pids := l.workerPIDs(t, "default")
	if h.Lane != "default" || h.Method != "GET" || h.Path != "/demo/hang" || h.Client != "127.0.0.1" ||
		!contains(pids, h.Worker) || h.TimeoutIn <= 0 || h.TimeoutIn > 1.6 || h.Elapsed+h.TimeoutIn < 1.9 || h.Elapsed+h.TimeoutIn > 2.1 {
		t.Errorf("in flight: %+v; want GET /demo/hang from 127.0.0.1 on one of %v, elapsed + timeout_in = 2 s", h, pids)
	}
	if r := <-done; r.status != http.StatusGatewayTimeout {
		t.Fatalf("/demo/hang: %v, want 504", r)
	}

	var es []api.Event
	waitFor(t, "the kill and the learning in /api/events", 10*time.Second, func() bool {
		es = l.events(t, 0)
		_, kill := findEvent(es, "kill", "default", "/demo/hang")
		_, learned := findEvent(es, "learned", "slow", "/demo/hang")
		return kill && learned
	})
	if k, _ := findEvent(es, "kill", "default", "/demo/hang"); k.PID != h.Worker {
		t.Errorf("kill event %+v: want pid %d", k, h.Worker)
	}
	last := es[len(es)-1].ID

	l.resize(t, "slow", api.ResizeRequest{MinWorkers: new(2), MaxWorkers: new(3)})
	l.drain(t, "slow")
	l.reload(t)
	waitFor(t, "resize, drain (start and end) and reload events after id "+fmt.Sprint(last), 20*time.Second, func() bool {
		es = l.events(t, last)
		n := 0
		for _, e := range es {
			if e.Kind == "drain" && strings.HasPrefix(e.Detail, "done") {
				n++
			}
		}
		_, rs := findEvent(es, "resize", "slow", "")
		_, rl := findEvent(es, "reload", "", "")
		return rs && rl && n == 1
	})
	for i, e := range es {
		if e.ID <= last || (i > 0 && e.ID <= es[i-1].ID) {
			t.Errorf("events after %d out of order or old: %+v", last, es)
			break
		}
	}
	if r := l.adminCall(http.MethodGet, "/api/events?since=x", nil); r.status != http.StatusBadRequest {
		t.Errorf("since=x: %v, want 400", r)
	}
}
