package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// resetOrigin is a raw TCP origin that reads a request's header and 64 KB of
// its body, counts the request by path, and resets the connection: an app
// that dies (or is restarted) while a large upload is still arriving.
type resetOrigin struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
}

func newResetOrigin(t *testing.T) *resetOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	o := &resetOrigin{addr: ln.Addr().String(), seen: map[string]int{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					c.Close()
					return
				}
				o.mu.Lock()
				o.seen[req.Method+" "+req.URL.Path]++
				o.mu.Unlock()
				_, _ = io.CopyN(io.Discard, req.Body, 64<<10)
				c.(*net.TCPConn).SetLinger(0) // RST, not FIN
				c.Close()
			}()
		}
	}()
	return o
}

func (o *resetOrigin) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[key]
}

// TestHardeningPostNotSentTwice (issue 15, HIGH 2): a POST of a few MB whose
// upstream resets the connection mid-body reaches the app once, never twice:
// the front's write to the worker fails after the worker had already passed
// the request on, and a request that is not idempotent is not retried once
// a byte of it reached a worker.
func TestHardeningPostNotSentTwice(t *testing.T) {
	t.Parallel()
	origin := newResetOrigin(t)
	l := startLanesd(t, fmt.Sprintf(`
app {
  upstream = "http://%s"
}
lane "default" {
  min_workers = 2
}
`, origin.addr))
	body := bytes.Repeat([]byte("x"), 4<<20)
	for i := range 4 {
		path := fmt.Sprintf("/upload/%d", i)
		r := do(l.client, http.MethodPost, l.URL(path), body, nil)
		if r.err == nil && r.status < 500 {
			t.Errorf("POST %s: want a 5xx for an upstream that reset mid-body, got %v", path, r)
		}
		if n := origin.count("POST " + path); n != 1 {
			t.Errorf("POST %s reached the app %d times, want once", path, n)
		}
	}
}

// TestHardeningQueuedClientGone (issue 15, item 6): a request whose client
// closes its connection while the request waits in the lane's queue is
// never dispatched: the app never sees it, and the access log has it as
// 499; the next request is served.
func TestHardeningQueuedClientGone(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		io.WriteString(w, "ok "+r.URL.Path+"\n")
	}))
	defer origin.Close()
	l := startLanesd(t, fmt.Sprintf(`
app {
  upstream = "%s"
}
lane "default" {
  min_workers = 1
  max_workers = 1
}
`, origin.URL))
	slow := make(chan result, 1)
	go func() { slow <- l.get("/slow") }()
	waitFor(t, "/slow to reach the origin", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return seen["/slow"] == 1 })

	c, err := net.Dial("tcp", l.Front)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // queued behind /slow
	c.Close()

	if r := <-slow; r.status != 200 {
		t.Fatalf("/slow: %v", r)
	}
	l.mustGet(t, "/after", 200)
	waitFor(t, "the gone request in the access log as 499", 5*time.Second, func() bool {
		return len(l.accessLines("path=/gone", "status=499")) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if seen["/gone"] != 0 {
		t.Errorf("the app ran a request whose client had gone while it was queued (%d times)", seen["/gone"])
	}
}
