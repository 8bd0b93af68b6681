package supervisor

import (
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/supervisor/lane"
)

func laneStatus(s *Supervisor, name string) lane.Status {
	for _, l := range s.state.Load().lanes {
		if l.Name() == name {
			return l.Status()
		}
	}
	return lane.Status{}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueFullAnswers503AtOnce(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  max_queue = 1
  queue_timeout = "10s"
  command = [CMD]
}`)
	var wg sync.WaitGroup
	for range 2 { // one runs, one waits
		wg.Go(func() { get(t, s, "/hello/sleep?d=1500ms") })
	}
	waitFor(t, "a queued request", 5*time.Second, func() bool { return laneStatus(s, "default").Queued == 1 })
	began := time.Now()
	code, _, h := get(t, s, "/hello/x")
	if code != 503 || len(h.Peek("Retry-After")) == 0 {
		t.Fatalf("third request: %d, Retry-After %q; want 503 with Retry-After", code, h.Peek("Retry-After"))
	}
	if waited := time.Since(began); waited > time.Second {
		t.Errorf("503 took %v; a full queue must refuse at once", waited)
	}
	wg.Wait()
	if st := laneStatus(s, "default"); st.Rejected != 1 || st.Served != 2 {
		t.Errorf("rejected %d served %d, want 1 and 2", st.Rejected, st.Served)
	}
}

// With concurrency 2, a request past its deadline takes its worker out of
// rotation, but the worker's other request keeps running to its own end
// before the worker is killed; a replacement serves meanwhile.
func TestTimeoutKillsWorkerAfterItsOtherRequests(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  concurrency = 2
  request_timeout = "1s"
  command = [CMD]
}`)
	old := laneStatus(s, "default").Workers[0].PID

	other := make(chan int, 1)
	go func() {
		// Runs from 0.6s to 1.3s: still running when the hang times out
		// at 1s, well inside its own deadline (1.6s).
		time.Sleep(600 * time.Millisecond)
		code, _, _ := get(t, s, "/hello/sleep?d=700ms")
		other <- code
	}()
	code, _, _ := get(t, s, "/hello/sleep?d=1h")
	if code != 504 {
		t.Fatalf("hung request: %d, want 504", code)
	}
	// The worker is out of rotation but alive until its other request ends.
	st := laneStatus(s, "default")
	if len(st.Workers) == 0 || st.Timeouts != 1 {
		t.Fatalf("after timeout: %+v", st)
	}
	if err := syscall.Kill(old, 0); err != nil {
		t.Fatalf("worker %d killed before its other request ended: %v", old, err)
	}
	code, body, _ := get(t, s, "/hello/x")
	if code != 200 || strings.Contains(body, "pid "+strconv.Itoa(old)+",") {
		t.Fatalf("request during kill: %d %q; want 200 from the replacement", code, body)
	}
	if c := <-other; c != 200 {
		t.Fatalf("other request on the timed-out worker: %d, want 200", c)
	}
	waitFor(t, "old worker gone", 5*time.Second, func() bool { return syscall.Kill(old, 0) != nil })
	waitFor(t, "lane back to one ready worker", 5*time.Second, func() bool {
		st := laneStatus(s, "default")
		return len(st.Workers) == 1 && st.Workers[0].State == "ready" && st.Workers[0].PID != old
	})
	if st := laneStatus(s, "default"); st.Killed != 1 || st.Respawns != 1 {
		t.Errorf("killed %d respawns %d, want 1 and 1", st.Killed, st.Respawns)
	}
}

// A worker that reached max_requests is replaced without failing a request.
func TestMaxRequestsRecyclesWorker(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  max_requests = 3
  command = [CMD]
}`)
	first := laneStatus(s, "default").Workers[0].PID
	pids := map[string]bool{}
	for i := range 12 {
		code, body, _ := get(t, s, "/hello/x")
		if code != 200 {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
		pids[strings.Fields(body)[3]] = true
	}
	if len(pids) < 4 {
		t.Errorf("12 requests with max_requests = 3 were served by %d workers, want at least 4", len(pids))
	}
	waitFor(t, "first worker gone", 5*time.Second, func() bool { return syscall.Kill(first, 0) != nil })
	if st := laneStatus(s, "default"); st.Respawns < 3 || st.Killed != 0 {
		t.Errorf("respawns %d killed %d; recycling is not killing", st.Respawns, st.Killed)
	}
}
