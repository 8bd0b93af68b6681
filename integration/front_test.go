package integration

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFrontLimits: the front refuses what it cannot or should not read —
// oversized headers and bodies, garbage — and a slowloris client costs
// other clients nothing.
func TestFrontLimits(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, `
front {
  max_header_size = "8KB"
  max_body_size   = "1MB"
  read_timeout    = "2s"
}
app {
  demo = true
}
lane "default" {
  min_workers = 2
}
`)

	t.Run("header too large", func(t *testing.T) {
		raw := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n"
		resp, body, err := readResponse(l.Front, raw, 10*time.Second)
		if err != nil {
			t.Fatalf("16KB header: %v", err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("16KB header: want 431, got %s %q", resp.Status, body)
		}
		// A header under the limit is fine.
		r := do(l.client, http.MethodGet, l.URL("/"), nil, http.Header{"X-Big": {strings.Repeat("a", 4<<10)}})
		if r.err != nil || r.status != 200 {
			t.Errorf("4KB header: %s", r)
		}
	})

	t.Run("body too large", func(t *testing.T) {
		// The declared length alone is over the limit: the front answers
		// without reading the body, so the test sends none (a body the
		// server never reads would make the kernel reset the connection,
		// losing the answer).
		raw := "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 2097152\r\n\r\n"
		resp, body, err := readResponse(l.Front, raw, 10*time.Second)
		if err != nil {
			t.Fatalf("2MB body: %v", err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("2MB body: want 413, got %s %q", resp.Status, body)
		}
		// A body under the limit passes.
		r := do(l.client, http.MethodPost, l.URL("/demo/echo"), bytes.Repeat([]byte("x"), 512<<10), nil)
		if r.err != nil || r.status == http.StatusRequestEntityTooLarge || r.status >= 500 {
			t.Errorf("512KB body: %s", r)
		}
	})

	t.Run("malformed request line", func(t *testing.T) {
		for _, raw := range []string{
			"GARBAGE\r\n\r\n",
			"GET\r\nHost: x\r\n\r\n",
			"GET / HTTP/1.1 extra words\r\nHost: x\r\n\r\n",
		} {
			resp, body, err := readResponse(l.Front, raw, 10*time.Second)
			if err != nil {
				t.Errorf("%q: %v", raw, err)
				continue
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%q: want 400, got %s %q", raw, resp.Status, body)
			}
		}
		l.mustGet(t, "/", 200)
	})

	t.Run("slowloris", func(t *testing.T) {
		const slow = 5
		closed := make(chan time.Duration, slow)
		var slowWG sync.WaitGroup
		for range slow {
			c, err := net.DialTimeout("tcp", l.Front, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			slowWG.Go(func() {
				start := time.Now()
				// Reader: notices when the front closes the connection.
				gone := make(chan struct{})
				go func() {
					_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
					io.Copy(io.Discard, c)
					close(gone)
				}()
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
				tick := time.NewTicker(500 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-gone:
						closed <- time.Since(start)
						return
					case <-tick.C:
						if _, err := io.WriteString(c, "X-Slow-"+string(rune('a'+i%26))+": 1\r\n"); err != nil {
							<-gone
							closed <- time.Since(start)
							return
						}
					}
				}
			})
		}

		// Meanwhile 50 ordinary requests from other clients.
		var wg sync.WaitGroup
		results := make([]result, 50)
		sem := make(chan struct{}, 10)
		for i := range results {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c := newClient(20 * time.Second)
				results[i] = do(c, http.MethodGet, l.URL("/"), nil, nil)
				c.CloseIdleConnections()
			})
		}
		wg.Wait()
		for i, r := range results {
			if r.err != nil || r.status != 200 {
				t.Errorf("ordinary request #%d during slowloris: %s", i, r)
			}
		}

		slowWG.Wait()
		close(closed)
		for d := range closed {
			if d > 8*time.Second {
				t.Errorf("slowloris connection closed after %v; read_timeout is 2s", d)
			}
			t.Logf("slowloris connection closed after %v", d.Round(time.Millisecond))
		}
	})
}
