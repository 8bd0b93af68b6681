package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The workers' side of a lane as a user sees it through the front: a
// custom Go worker (internal/testworker, "hello-worker") answering, a full
// queue, hard timeouts, recycling, wrappers, clients that read slowly.
// These ran in the supervisor's unit tests, against a supervisor in the
// test process; they are about processes, so they run lanesd here.

// helloConfig is lanes with the demo app and debug headers, CMD in it
// standing for hello-worker.
func helloConfig(lanes string) string {
	return "debug_headers = true\napp {\n  demo = true\n}\n" + strings.ReplaceAll(lanes, "CMD", strconv.Quote(helloBin))
}

// mustDo is l.get failing the test on a transport error; it may run on
// any goroutine (it reports with Errorf and returns a zero result).
func (l *lanesd) mustDo(t *testing.T, path string) result {
	r := l.get(path)
	if r.err != nil {
		t.Errorf("GET %s: %v", path, r.err)
	}
	return r
}

func TestCustomWorkerServesThroughLanes(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 2
  command = [CMD]
}
lane "other" {
  min_workers = 1
  command = [CMD]
  map = ["GET /hello/other*"]
}`))
	r := l.mustDo(t, "/hello/x")
	if r.status != 200 || !strings.Contains(string(r.body), "lane default") {
		t.Fatalf("default lane: %s", r)
	}
	if got := r.header.Get("X-Lane"); got != "default" {
		t.Errorf("X-Lane = %q", got)
	}
	if st := r.header.Get("Server-Timing"); !strings.Contains(st, "queue;dur=") || !strings.Contains(st, "total;dur=") {
		t.Errorf("Server-Timing = %q", st)
	}
	r = l.mustDo(t, "/hello/other/1")
	if r.status != 200 || !strings.Contains(string(r.body), "lane other") {
		t.Fatalf("other lane: %s", r)
	}
	// A panicking handler is recovered in the worker: 500, and the worker
	// goes on serving.
	if r := l.mustDo(t, "/hello/panic"); r.status != 500 {
		t.Fatalf("panic: %s", r)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if r := l.mustDo(t, "/hello/sleep?d=20ms"); r.status != 200 {
				t.Errorf("concurrent: %s", r)
			}
		})
	}
	wg.Wait()
}

// A custom worker's own log lines reach lanesd's log at their level,
// under the lane's name: hclog ones, and the standard log package's.
func TestWorkerLogsReachSupervisorLog(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
log {
  level = "info"
}
lane "default" {
  min_workers = 1
  command = [CMD]
}`))
	if r := l.mustDo(t, "/hello/log"); r.status != 200 {
		t.Fatalf("GET /hello/log: %s", r)
	}
	l.waitLog(t, 5*time.Second, "hello-worker: /hello/log asked to log")
	for _, line := range strings.Split(l.Log.String(), "\n") {
		if strings.Contains(line, "asked to log") && (!strings.Contains(line, "[INFO]") || !strings.Contains(line, "lane=default")) {
			t.Errorf("worker log line not at INFO under its lane: %q", line)
		}
	}
}

func TestQueueFullAnswers503AtOnce(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  max_queue = 1
  queue_timeout = "10s"
  command = [CMD]
}`))
	var wg sync.WaitGroup
	for range 2 { // one runs, one waits
		wg.Go(func() { l.mustDo(t, "/hello/sleep?d=1500ms") })
	}
	waitFor(t, "a queued request", 5*time.Second, func() bool { return l.lane(t, "default").Queued == 1 })
	began := time.Now()
	r := l.mustDo(t, "/hello/x")
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("third request: %s, Retry-After %q; want 503 with Retry-After", r, r.header.Get("Retry-After"))
	}
	if waited := time.Since(began); waited > time.Second {
		t.Errorf("503 took %v; a full queue must refuse at once", waited)
	}
	wg.Wait()
	if st := l.lane(t, "default"); st.Rejected != 1 || st.Served != 2 {
		t.Errorf("rejected %d served %d, want 1 and 2", st.Rejected, st.Served)
	}
}

// With concurrency 2, a request past its deadline takes its worker out of
// rotation, but the worker's other request keeps running to its own end
// before the worker is killed; a replacement serves meanwhile.
func TestTimeoutKillsWorkerAfterItsOtherRequests(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  concurrency = 2
  request_timeout = "1s"
  command = [CMD]
}`))
	old := l.lane(t, "default").Workers[0].PID

	other := make(chan int, 1)
	go func() {
		// Runs from 0.6s to 1.3s: still running when the hang times out
		// at 1s, well inside its own deadline (1.6s).
		time.Sleep(600 * time.Millisecond)
		other <- l.mustDo(t, "/hello/sleep?d=700ms").status
	}()
	if r := l.mustDo(t, "/hello/sleep?d=1h"); r.status != 504 {
		t.Fatalf("hung request: %s, want 504", r)
	}
	// The worker is out of rotation but alive until its other request ends.
	st := l.lane(t, "default")
	if len(st.Workers) == 0 || st.Timeouts != 1 {
		t.Fatalf("after timeout: %+v", st)
	}
	if err := syscall.Kill(old, 0); err != nil {
		t.Fatalf("worker %d killed before its other request ended: %v", old, err)
	}
	if r := l.mustDo(t, "/hello/x"); r.status != 200 || strings.Contains(string(r.body), "pid "+strconv.Itoa(old)+",") {
		t.Fatalf("request during kill: %s; want 200 from the replacement", r)
	}
	if c := <-other; c != 200 {
		t.Fatalf("other request on the timed-out worker: %d, want 200", c)
	}
	waitFor(t, "old worker gone", 5*time.Second, func() bool { return syscall.Kill(old, 0) != nil })
	waitFor(t, "lane back to one ready worker", 5*time.Second, func() bool {
		st := l.lane(t, "default")
		return len(st.Workers) == 1 && st.Workers[0].State == "ready" && st.Workers[0].PID != old
	})
	if st := l.lane(t, "default"); st.Killed != 1 || st.Respawns != 1 {
		t.Errorf("killed %d respawns %d, want 1 and 1", st.Killed, st.Respawns)
	}
}

// A worker that reached max_requests is replaced without failing a request.
func TestMaxRequestsRecyclesWorker(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  max_requests = 3
  command = [CMD]
}`))
	first := l.lane(t, "default").Workers[0].PID
	pids := map[string]bool{}
	for i := range 12 {
		r := l.mustDo(t, "/hello/x")
		if r.status != 200 {
			t.Fatalf("request %d: %s", i, r)
		}
		pid := strings.TrimSuffix(strings.Fields(string(r.body))[3], ",")
		pids[pid] = true
		if i%3 == 2 {
			// The replacement starts while the worker still serves; the
			// worker stands by until its replacement has been ready for
			// its probation, then leaves rotation.
			waitFor(t, "the replacement in rotation", 5*time.Second, func() bool {
				for _, w := range l.lane(t, "default").Workers {
					if w.State == "ready" && !pids[strconv.Itoa(w.PID)] {
						return true
					}
				}
				return false
			})
		}
	}
	if len(pids) < 4 {
		t.Errorf("12 requests with max_requests = 3 were served by %d workers, want at least 4", len(pids))
	}
	waitFor(t, "first worker gone", 5*time.Second, func() bool { return syscall.Kill(first, 0) != nil })
	if st := l.lane(t, "default"); st.Respawns < 3 || st.Killed != 0 {
		t.Errorf("respawns %d killed %d; recycling is not killing", st.Respawns, st.Killed)
	}
}

// A lane command may be a wrapper that forks the worker (sh -c, go run):
// the worker's parent is then the wrapper, not the supervisor, and the
// worker must not take that for the supervisor's death.
func TestWrappedWorkerStaysUp(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  command = ["/bin/sh", "-c", "\"$0\"; exit $?", CMD]
}`))
	time.Sleep(time.Second) // five parent polls
	if r := l.mustDo(t, "/hello/x"); r.status != 200 {
		t.Fatalf("GET: %s", r)
	}
	if st := l.lane(t, "default"); st.Respawns != 0 || st.Crashes != 0 {
		t.Errorf("respawns %d crashes %d (last exit %q); the wrapped worker must stay up", st.Respawns, st.Crashes, st.LastExit)
	}
}

// HTTP/1.0 allows a request without Host; it must reach the worker.
func TestHTTP10WithoutHost(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  command = [CMD]
}`))
	c, err := net.Dial("tcp", l.Front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /hello/x HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, " 200 ") {
		t.Fatalf("HTTP/1.0 without Host: %q, want 200", line)
	}
}

// A client that takes the body slower than request_timeout gets it cut at
// the deadline, but the worker, which sent everything in time, is not
// killed for it.
func TestSlowClientDoesNotKillWorker(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
app {
  demo = true
}
lane "default" {
  min_workers = 1
  request_timeout = "1s"
}`)
	c, err := net.Dial("tcp", l.Front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /demo/bytes?n=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response: %v %v", resp, err)
	}
	time.Sleep(1500 * time.Millisecond) // the front blocks writing to us past the deadline
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	// To the body's end, or its cut: the connection itself stays open.
	_, _ = io.Copy(io.Discard, resp.Body)
	waitFor(t, "request released", 5*time.Second, func() bool { return l.lane(t, "default").Served == 1 })
	if st := l.lane(t, "default"); st.Killed != 0 || st.Timeouts != 0 || st.Respawns != 0 {
		t.Errorf("killed %d timeouts %d respawns %d; a slow client must not kill its worker", st.Killed, st.Timeouts, st.Respawns)
	}
}

// A small response is read whole before the client sees it, so a worker
// that fails in the middle of one still gets the client a clean error
// rather than a truncated 200.
func TestWorkerFailingMidBodyGetsCleanError(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 2
  request_timeout = "1s"
  command = [CMD]
}`))
	if r := l.mustDo(t, "/hello/partial?then=exit"); r.status != 502 || strings.Contains(string(r.body), "0123456789") {
		t.Errorf("worker exiting mid-body: %s, want a clean 502", r)
	}
	if r := l.mustDo(t, "/hello/partial?then=hang"); r.status != 504 || strings.Contains(string(r.body), "0123456789") {
		t.Errorf("worker hanging mid-body: %s, want a clean 504", r)
	}
	waitFor(t, "both workers replaced and ready", 10*time.Second, func() bool {
		st := l.lane(t, "default")
		return len(st.PIDs("ready")) == 2 && st.Killed == 1 && st.Timeouts == 1
	})
	if r := l.mustDo(t, "/hello/x"); r.status != 200 {
		t.Errorf("after: %s", r)
	}
}

// A worker's status shows its resident size from the moment it is ready.
func TestStatusShowsWorkerRSS(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, helloConfig(`
lane "default" {
  min_workers = 1
  command = [CMD]
}`))
	if w := l.lane(t, "default").Workers[0]; w.RSS < 1<<20 {
		t.Errorf("worker %d reports rss %d bytes, want its resident size (a Go worker holds > 1 MiB)", w.PID, w.RSS)
	}
}
