package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// dirtyOrigin answers every request with its own path and misbehaves on
// /bad as its test says. It notes which connection each path came on.
type dirtyOrigin struct {
	addr   string
	mu     sync.Mutex
	conns  int
	connOf map[string]int
}

// injected is what a misbehaving origin slips onto the connection: a whole
// answer that, read by the next request, would be someone else's.
const injected = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: session=attacker\r\n\r\nattacker"

func startDirtyOrigin(t testing.TB, bad func(c net.Conn, req *message)) *dirtyOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &dirtyOrigin{addr: ln.Addr().String(), connOf: map[string]int{}}
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
			o.mu.Lock()
			o.conns++
			n := o.conns
			o.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := readMessage(br, true, false)
					if err != nil {
						return
					}
					path := strings.Fields(req.start)[1]
					o.mu.Lock()
					o.connOf[path] = n
					o.mu.Unlock()
					if path == "/bad" {
						bad(c, req)
						continue
					}
					body := "path=" + path
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	return o
}

func (o *dirtyOrigin) conn(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.connOf[path]
}

// writeAll writes parts to c, pausing between them: each pause lets the
// proxy read what came before on its own.
func writeAll(c net.Conn, pause time.Duration, parts ...string) {
	for i, p := range parts {
		if i > 0 {
			time.Sleep(pause)
		}
		io.WriteString(c, p)
	}
}

// TestProxyDirtyConnNotReused: an upstream that sends more than it
// declared (Content-Length short of the body, a body to HEAD, 204 or 304,
// an answer nobody asked for) must not hand those bytes to the next
// request on its connection: every later request gets its own answer, on a
// fresh connection, and no 502.
func TestProxyDirtyConnNotReused(t *testing.T) {
	const pause = 20 * time.Millisecond
	for _, tc := range []struct {
		name   string
		method string
		status int
		body   string
		bad    func(c net.Conn, req *message)
		wait   time.Duration // before the next request
	}{
		{"length short, one write", "GET", 200, "hello", func(c net.Conn, _ *message) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"+injected)
		}, pause},
		{"length short, late bytes", "GET", 200, "hello", func(c net.Conn, _ *message) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", injected)
		}, pause},
		{"unsolicited answer, at once", "GET", 200, "fine", func(c net.Conn, _ *message) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", injected)
		}, pause},
		{"unsolicited answer, while idle", "GET", 200, "fine", func(c net.Conn, _ *message) {
			writeAll(c, 50*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", injected)
		}, 150 * time.Millisecond},
		{"HEAD with a body, one write", "HEAD", 200, "", func(c net.Conn, _ *message) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello, HEAD!")
		}, pause},
		{"HEAD with a body, late bytes", "HEAD", 200, "", func(c net.Conn, _ *message) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "hello, HEAD!")
		}, pause},
		{"204 with a body", "GET", 204, "", func(c net.Conn, _ *message) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n", "attacker")
		}, pause},
		{"204 with an answer in it", "GET", 204, "", func(c net.Conn, _ *message) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 204 No Content\r\n\r\n", injected)
		}, pause},
		{"304 with a body", "GET", 304, "", func(c net.Conn, _ *message) {
			writeAll(c, 0, "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\nattacker")
		}, pause},
		{"304 with an answer in it", "GET", 304, "", func(c net.Conn, _ *message) {
			writeAll(c, 5*time.Millisecond, "HTTP/1.1 304 Not Modified\r\n\r\n", injected)
		}, pause},
		{"chunked, then an answer", "GET", 200, "chunk", func(c net.Conn, _ *message) {
			writeAll(c, 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n"+injected)
		}, pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startDirtyOrigin(t, tc.bad)
			addr := proxyTo(t, o.addr, 5*time.Second)
			// One client connection, one request at a time: the app keeps a
			// single upstream connection.
			c := &fasthttp.HostClient{Addr: addr, MaxConns: 1, MaxIdemponentCallAttempts: 1}
			send := func(method, path string) (int, string) {
				req := fasthttp.AcquireRequest()
				defer fasthttp.ReleaseRequest(req)
				resp := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://" + addr + path)
				req.Header.SetMethod(method)
				if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
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
			if o.conn("/bad") != o.conn("/first") {
				t.Fatalf("/bad came on connection %d, /first on %d: not one pooled connection", o.conn("/bad"), o.conn("/first"))
			}
			time.Sleep(tc.wait)
			for i := range 6 {
				path := fmt.Sprintf("/next/%d", i)
				if st, body := send("GET", path); st != 200 || body != "path="+path {
					t.Fatalf("GET %s after the dirty answer: %d %q", path, st, body)
				}
			}
			if o.conn("/next/0") == o.conn("/bad") {
				t.Errorf("the connection that carried /bad was reused")
			}
			if o.conn("/next/5") != o.conn("/next/0") {
				t.Errorf("clean connections were not reused: /next/0 on %d, /next/5 on %d", o.conn("/next/0"), o.conn("/next/5"))
			}
		})
	}
}

// TestProxyIdleClosedRedials: a pooled connection the upstream closed while
// idle (its keep-alive timeout) is replaced before the request goes out,
// instead of failing it with 502.
func TestProxyIdleClosedRedials(t *testing.T) {
	o := startDirtyOrigin(t, func(c net.Conn, _ *message) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
		c.Close()
	})
	addr := proxyTo(t, o.addr, 5*time.Second)
	if m := get(t, addr, "/bad"); string(m.Body()) != "bye" {
		t.Fatalf("GET /bad: %d %q", m.StatusCode(), m.Body())
	}
	time.Sleep(20 * time.Millisecond)
	if m := get(t, addr, "/after"); m.StatusCode() != 200 || string(m.Body()) != "path=/after" {
		t.Fatalf("GET /after: %d %q", m.StatusCode(), m.Body())
	}
}
