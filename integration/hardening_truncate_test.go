package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// cutOrigin is a raw TCP origin that answers every request with a chunked
// response and closes the connection before its end: between two chunks
// (/between) or inside one (/inside).
func cutOrigin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				msg := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
				switch req.URL.Path {
				case "/inside":
					msg += "10\r\nhalf a c"
				case "/whole":
					msg += "0\r\n\r\n"
				}
				io.WriteString(c, msg)
				time.Sleep(50 * time.Millisecond)
			}()
		}
	}()
	return ln.Addr().String()
}

// rawExchange sends one request on a new connection and returns the raw
// bytes that came back until the front closed the connection, and whether
// it did close it (rather than keep it for another request).
func rawExchange(t *testing.T, addr, path string) (string, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

// TestHardeningTruncatedChunked (issue 7, HIGH 2): a chunked response cut
// short by the origin (through the built-in proxy worker) or by a worker
// that dies mid-body reaches the client without its terminating chunk, on
// a connection the front closes; the access log and front.truncated count
// it as failed.
func TestHardeningTruncatedChunked(t *testing.T) {
	t.Parallel()
	origin := cutOrigin(t)
	l := startLanesd(t, fmt.Sprintf(`
app {
  upstream = "http://%s"
}
lane "default" {
  min_workers = 2
}
lane "hello" {
  min_workers = 2
  command     = [%q]
  map         = ["GET /hello/*"]
}
`, origin, helloBin))

	// The control case: a whole chunked body ends with 0\r\n\r\n and the
	// connection stays open.
	got, closed := rawExchange(t, l.Front, "/whole")
	if !strings.HasSuffix(got, "0\r\n\r\n") || closed {
		t.Fatalf("whole chunked response: closed=%v %q", closed, got)
	}

	var want uint64
	for _, path := range []string{"/between", "/inside", "/hello/chunked-cut", "/hello/chunked-cut?at=inside"} {
		got, closed := rawExchange(t, l.Front, path)
		want++
		if !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.Contains(got, "hello") {
			t.Errorf("GET %s: want the 200 and the first chunk, got %q", path, got)
		}
		if strings.HasSuffix(got, "0\r\n\r\n") {
			t.Errorf("GET %s: cut-short body ended with the terminating chunk: %q", path, got)
		}
		if !closed {
			t.Errorf("GET %s: the front kept the connection of a cut-short response open", path)
		}
	}
	var fs *api.Front
	waitFor(t, "front.truncated to count every cut", 10*time.Second, func() bool {
		fs, _ = l.tryFront()
		return fs != nil && fs.Truncated >= want
	})
	waitFor(t, "access log lines with failed=truncated", 10*time.Second, func() bool {
		return len(l.accessLines("failed=truncated")) >= int(want)
	})
	if n := len(l.accessLines("path=/whole", "failed=")); n != 0 {
		t.Errorf("the whole response was logged as failed: %q", l.accessLines("path=/whole"))
	}
	var ok atomic.Bool
	waitFor(t, "a GET after the cuts", 10*time.Second, func() bool {
		r := l.get("/hello/x")
		ok.Store(r.err == nil && r.status == 200)
		return ok.Load()
	})
}
