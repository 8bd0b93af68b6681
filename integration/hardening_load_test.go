package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHardeningKilledWorkersLoseNoGET (issue 7 item 3): under a constant GET
// load, SIGKILLing workers one after another fails no request: a request
// whose worker died before answering is retried once on another.
func TestHardeningKilledWorkersLoseNoGET(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
log {
  access_log = false
}
app {
  demo = true
}
lane "default" {
  min_workers = 4
  max_workers = 4
  concurrency = 4
}
`)
	l.mustGet(t, "/", 200)
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var fails []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 { // ~250 req/s: 4 loops, a request every 16 ms each
		wg.Go(func() {
			c := newClient(10 * time.Second)
			tick := time.NewTicker(16 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				r := do(c, http.MethodGet, l.URL("/demo/sleep?ms=5"), nil, nil)
				sent.Add(1)
				if r.err != nil || r.status != 200 {
					failed.Add(1)
					mu.Lock()
					fails = append(fails, r.String())
					mu.Unlock()
				}
			}
		})
	}
	const kills = 7
	for i := range kills {
		time.Sleep(700 * time.Millisecond)
		var pids []int
		waitFor(t, "a ready worker to kill", 20*time.Second, func() bool {
			pids = l.workerPIDs(t, "default")
			return len(pids) >= 3
		})
		pid := pids[i%len(pids)]
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Logf("kill %d: %v", pid, err)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	fs := l.status(t).Front
	t.Logf("%d workers SIGKILLed: %d GETs sent, %d failed, %d retried", kills, sent.Load(), failed.Load(), fs.Retries)
	if failed.Load() != 0 {
		t.Errorf("%d of %d GETs failed while workers were killed: %q", failed.Load(), sent.Load(), fails)
	}
}

// TestHardeningSlowReaders (issue 7 item 4): clients that never read a
// 20 MB response cost the front a buffer, not a worker: ordinary requests
// on the same lane are answered at once.
func TestHardeningSlowReaders(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
front {
  write_timeout = "60s"
}
log {
  access_log = false
}
app {
  demo = true
}
lane "default" {
  min_workers     = 2
  max_workers     = 2
  concurrency     = 16
  max_queue       = 100
  queue_timeout   = "2s"
  request_timeout = "15s"
}
`)
	l.mustGet(t, "/", 200)
	before := procKB(l.PID, "VmRSS")
	const n = 32
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", l.Front)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A small receive buffer, never read: the client is as slow as it gets.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4 << 10)
		}
		fmt.Fprintf(c, "GET /demo/bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", 20<<20)
		conns = append(conns, c)
	}
	// Every worker slot freed once the workers have sent their 20 MB.
	waitFor(t, "every slow reader's worker slot to be free", 30*time.Second, func() bool {
		return l.lane(t, "default").Inflight == 0
	})
	start := time.Now()
	for i := range 20 {
		r := l.get("/demo/sleep?ms=1")
		if r.err != nil || r.status != 200 {
			t.Fatalf("ordinary request %d with %d slow readers: %s", i, n, r)
		}
	}
	took := time.Since(start)
	after := procKB(l.PID, "VmRSS")
	hwm := procKB(l.PID, "VmHWM")
	t.Logf("%d readers of 20 MB that never read: 20 ordinary requests in %v; front RSS %d -> %d kB (peak %d kB), growth %d MB",
		n, took.Round(time.Millisecond), before, after, hwm, (after-before)>>10)
	if took > 2*time.Second {
		t.Errorf("ordinary requests took %v with slow readers", took)
	}
	if ls := l.lane(t, "default"); ls.Killed != 0 || ls.Timeouts != 0 {
		t.Errorf("killed %d timeouts %d", ls.Killed, ls.Timeouts)
	}
	if growth := (hwm - before) >> 10; growth > 64 {
		t.Errorf("front grew %d MB for %d slow readers", growth, n)
	}
	_ = conns
}

// sinkUpstream counts and discards request bodies.
func sinkUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	}))
	t.Cleanup(up.Close)
	return up
}

// TestHardeningBigUploads (issue 7 item 5): 16 parallel 50 MB uploads grow
// neither the front nor any worker by more than ~64 MB.
func TestHardeningBigUploads(t *testing.T) {
	t.Parallel()
	up := sinkUpstream(t)
	l := startLanesd(t, fmt.Sprintf(`
front {
  max_body_size = "64MB"
  read_timeout  = "60s"
}
log {
  access_log = false
}
app {
  upstream = %q
}
lane "default" {
  min_workers     = 4
  max_workers     = 4
  concurrency     = 4
  request_timeout = "60s"
}
`, up.URL))
	l.mustGet(t, "/", 200)
	workers := l.workerPIDs(t, "default")
	base := map[int]int64{l.PID: procKB(l.PID, "VmRSS")}
	for _, p := range workers {
		base[p] = procKB(p, "VmRSS")
	}
	const size = 50 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var wg sync.WaitGroup
	res := make([]result, 16)
	for i := range res {
		wg.Go(func() {
			c := newClient(120 * time.Second)
			res[i] = do(c, http.MethodPost, l.URL("/upload"), body, nil)
		})
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil || r.status != 200 || string(r.body) != fmt.Sprintf("%d\n", size) {
			t.Errorf("upload %d: %s", i, r)
		}
	}
	for pid, b := range base {
		hwm := procKB(pid, "VmHWM")
		what := "worker"
		if pid == l.PID {
			what = "front"
		}
		t.Logf("%s %d: RSS at start %d kB, peak %d kB, growth %d MB", what, pid, b, hwm, (hwm-b)>>10)
		if (hwm-b)>>10 > 64 {
			t.Errorf("%s %d grew %d MB for 16 uploads of 50 MB", what, pid, (hwm-b)>>10)
		}
	}
}
