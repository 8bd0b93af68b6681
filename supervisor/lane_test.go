package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/lane"
	"github.com/lanes-dev/lanes/supervisor/proc"
)

func laneStatus(s *Supervisor, name string) api.Lane {
	if l := s.state.Load().lane(name); l != nil {
		return l.Status()
	}
	return api.Lane{}
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
		pid := strings.TrimSuffix(strings.Fields(body)[3], ",")
		pids[pid] = true
		if i%3 == 2 {
			// The replacement starts while the worker still serves; the
			// worker stands by until its replacement has been ready for
			// its probation, then leaves rotation.
			waitFor(t, "the replacement in rotation", 5*time.Second, func() bool {
				for _, w := range laneStatus(s, "default").Workers {
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
	if st := laneStatus(s, "default"); st.Respawns < 3 || st.Killed != 0 {
		t.Errorf("respawns %d killed %d; recycling is not killing", st.Respawns, st.Killed)
	}
}

// A lane command may be a wrapper that forks the worker (sh -c, go run):
// the worker's parent is then the wrapper, not the supervisor, and the
// worker must not take that for the supervisor's death.
func TestWrappedWorkerStaysUp(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  command = ["/bin/sh", "-c", "\"$0\"; exit $?", CMD]
}`)
	time.Sleep(time.Second) // five parent polls
	if code, body, _ := get(t, s, "/hello/x"); code != 200 {
		t.Fatalf("GET: %d %q", code, body)
	}
	if st := laneStatus(s, "default"); st.Respawns != 0 || st.Crashes != 0 {
		t.Errorf("respawns %d crashes %d (last exit %q); the wrapped worker must stay up", st.Respawns, st.Crashes, st.LastExit)
	}
}

// HTTP/1.0 allows a request without Host; it must reach the worker.
func TestHTTP10WithoutHost(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  command = [CMD]
}`)
	c, err := net.Dial("tcp", s.FrontAddr().String())
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
	lanesd := filepath.Join(t.TempDir(), "lanesd")
	if out, err := exec.Command("go", "build", "-o", lanesd, "github.com/lanes-dev/lanes/cmd/lanesd").CombinedOutput(); err != nil {
		t.Fatalf("build lanesd: %v\n%s", err, out)
	}
	s := start(t, fmt.Sprintf(`
lane "default" {
  min_workers = 1
  request_timeout = "1s"
  command = [%q, "worker"]
}`, lanesd))
	c, err := net.Dial("tcp", s.FrontAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /demo/bytes?n=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); !strings.Contains(line, " 200 ") {
		t.Fatalf("status line %q", line)
	}
	time.Sleep(1500 * time.Millisecond) // the front blocks writing to us past the deadline
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.Copy(io.Discard, br)
	waitFor(t, "request released", 5*time.Second, func() bool { return laneStatus(s, "default").Served == 1 })
	if st := laneStatus(s, "default"); st.Killed != 0 || st.Timeouts != 0 || st.Respawns != 0 {
		t.Errorf("killed %d timeouts %d respawns %d; a slow client must not kill its worker", st.Killed, st.Timeouts, st.Respawns)
	}
}

// Stop whose context has ended while a worker is still starting must not
// touch that worker's fields (run() is writing them), and the worker must
// still die: a Kill before the fork is remembered and applied to the
// process as soon as it is forked.
func TestStopWithExpiredContextWhileStarting(t *testing.T) {
	dir := t.TempDir()
	l := lane.New(config.Lane{
		Name: "s", MinWorkers: 1, MaxWorkers: 1, Concurrency: 1, MaxQueue: 1,
		QueueTimeout: time.Second, RequestTimeout: time.Second,
		Command: []string{"/bin/sh", "-c", "sleep 0.3; exec \"$0\"", helloWorker},
	}, lane.Env{Spawner: proc.NewSpawner(), RunDir: dir, Log: hclog.NewNullLogger()})
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	go func() { _ = l.Start(sctx) }()
	time.Sleep(100 * time.Millisecond) // the worker is in its handshake
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan struct{})
	go func() { l.Stop(ctx, false); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Stop did not return")
	}
	if ws := l.Status().Workers; len(ws) != 0 {
		t.Errorf("workers left after Stop: %+v", ws)
	}
}

// A small response is read whole before the client sees it, so a worker
// that fails in the middle of one still gets the client a clean error
// rather than a truncated 200.
func TestWorkerFailingMidBodyGetsCleanError(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 2
  request_timeout = "1s"
  command = [CMD]
}`)
	code, body, _ := get(t, s, "/hello/partial?then=exit")
	if code != 502 || strings.Contains(body, "0123456789") {
		t.Errorf("worker exiting mid-body: %d %q, want a clean 502", code, body)
	}
	code, body, _ = get(t, s, "/hello/partial?then=hang")
	if code != 504 || strings.Contains(body, "0123456789") {
		t.Errorf("worker hanging mid-body: %d %q, want a clean 504", code, body)
	}
	waitFor(t, "both workers replaced and ready", 10*time.Second, func() bool {
		st := laneStatus(s, "default")
		ready := 0
		for _, w := range st.Workers {
			if w.State == "ready" {
				ready++
			}
		}
		return ready == 2 && st.Killed == 1 && st.Timeouts == 1
	})
	if code, _, _ := get(t, s, "/hello/x"); code != 200 {
		t.Errorf("after: %d", code)
	}
}

// A worker's status shows its resident size from the moment it is ready.
func TestStatusShowsWorkerRSS(t *testing.T) {
	s := start(t, `
lane "default" {
  min_workers = 1
  command = [CMD]
}`)
	if w := laneStatus(s, "default").Workers[0]; w.RSS < 1<<20 {
		t.Errorf("worker %d reports rss %d bytes, want its resident size (a Go worker holds > 1 MiB)", w.PID, w.RSS)
	}
}
