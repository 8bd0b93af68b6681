package lane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// dirtyWorker is a worker on a unix socket that answers every request with
// its own path and misbehaves on /bad as its test says: what a program we
// did not write may do. It notes which connection each path came on.
type dirtyWorker struct {
	sock   string
	mu     sync.Mutex
	conns  int
	connOf map[string]int
}

// injected is an answer slipped onto the connection: read by the next
// request, it would be someone else's.
const injected = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: session=attacker\r\n\r\nattacker"

func startDirtyWorker(t *testing.T, bad func(c net.Conn)) *dirtyWorker {
	t.Helper()
	w := &dirtyWorker{sock: filepath.Join(t.TempDir(), "w.sock"), connOf: map[string]int{}}
	ln, err := net.Listen("unix", w.sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Store(c, nil)
			w.mu.Lock()
			w.conns++
			n := w.conns
			w.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					for { // the rest of the header; requests here have no body
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							break
						}
					}
					path := strings.Fields(line)[1]
					w.mu.Lock()
					w.connOf[path] = n
					w.mu.Unlock()
					if path == "/bad" {
						bad(c)
						continue
					}
					body := "path=" + path
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	return w
}

func (w *dirtyWorker) conn(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.connOf[path]
}

// writeAll writes parts to c, pausing between them.
func writeAll(c net.Conn, pause time.Duration, parts ...string) {
	for i, p := range parts {
		if i > 0 {
			time.Sleep(pause)
		}
		io.WriteString(c, p)
	}
}

// TestDataClientDirtyConnNotReused: a worker that sends more than it
// declared, or an answer nobody asked for, must not hand those bytes to
// the next request on its connection: each later request gets its own
// answer, on a fresh connection, without an error.
func TestDataClientDirtyConnNotReused(t *testing.T) {
	const pause = 20 * time.Millisecond
	for _, tc := range []struct {
		name   string
		method string
		status int
		body   string
		bad    func(c net.Conn)
		wait   time.Duration // before the next request
	}{
		{"length short, one write", "GET", 200, "hello", func(c net.Conn) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"+injected)
		}, pause},
		{"length short, late bytes", "GET", 200, "hello", func(c net.Conn) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", injected)
		}, pause},
		{"unsolicited answer, while idle", "GET", 200, "fine", func(c net.Conn) {
			writeAll(c, 50*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", injected)
		}, 150 * time.Millisecond},
		{"HEAD with a body", "HEAD", 200, "", func(c net.Conn) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "hello, HEAD!")
		}, pause},
		{"204 with an answer in it", "GET", 204, "", func(c net.Conn) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 204 No Content\r\n\r\n", injected)
		}, pause},
		{"304 with a body", "GET", 304, "", func(c net.Conn) {
			writeAll(c, 0, "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\nattacker")
		}, pause},
		{"chunked, then an answer", "GET", 200, "chunk", func(c net.Conn) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n", injected)
		}, pause},
		{"closed while idle", "GET", 200, "bye", func(c net.Conn) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
			c.Close()
		}, pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startDirtyWorker(t, tc.bad)
			hc := newDataClient(w.sock, 1)
			send := func(method, path string) (int, string) {
				req := fasthttp.AcquireRequest()
				defer fasthttp.ReleaseRequest(req)
				resp := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://worker" + path)
				req.Header.SetMethod(method)
				if err := hc.DoDeadline(req, resp, time.Now().Add(5*time.Second)); err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				return resp.StatusCode(), string(resp.Body())
			}

			if st, body := send("GET", "/first"); st != 200 || body != "path=/first" {
				t.Fatalf("GET /first: %d %q", st, body)
			}
			if st, body := send(tc.method, "/bad"); st != tc.status || body != tc.body {
				t.Fatalf("%s /bad: %d %q, want %d %q", tc.method, st, body, tc.status, tc.body)
			}
			if w.conn("/bad") != w.conn("/first") {
				t.Fatalf("/bad came on connection %d, /first on %d: not one pooled connection", w.conn("/bad"), w.conn("/first"))
			}
			time.Sleep(tc.wait)
			for i := range 6 {
				path := fmt.Sprintf("/next/%d", i)
				if st, body := send("GET", path); st != 200 || body != "path="+path {
					t.Fatalf("GET %s after the dirty answer: %d %q", path, st, body)
				}
			}
			if w.conn("/next/0") == w.conn("/bad") {
				t.Errorf("the connection that carried /bad was reused")
			}
			if w.conn("/next/5") != w.conn("/next/0") {
				t.Errorf("clean connections were not reused: /next/0 on %d, /next/5 on %d", w.conn("/next/0"), w.conn("/next/5"))
			}
		})
	}
}
