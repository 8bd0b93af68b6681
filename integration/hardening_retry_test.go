package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
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
		r := do(l.client, http.MethodPost, l.url(path), body, nil)
		if r.err == nil && r.status < 500 {
			t.Errorf("POST %s: want a 5xx for an upstream that reset mid-body, got %v", path, r)
		}
		if n := origin.count("POST " + path); n != 1 {
			t.Errorf("POST %s reached the app %d times, want once", path, n)
		}
	}
}
