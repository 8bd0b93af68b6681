package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httputil"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

// testLogger logs through t, so a failing test shows what the app said.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Debug,
		Output: &tWriter{t: t},
	})
}

type tWriter struct{ t testing.TB }

func (w *tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// quietLogger drops fasthttp's per-connection errors, which tests that
// abandon connections provoke on purpose.
var quietLogger = log.New(io.Discard, "", 0)

// serve runs h on a fasthttp server on a free loopback port until the test
// ends and returns its address. configure, if set, adjusts the server.
func serve(t testing.TB, h fasthttp.RequestHandler, configure func(*fasthttp.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h, Name: "test", Logger: quietLogger}
	if configure != nil {
		configure(s)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.ShutdownWithContext(ctx)
		<-done
	})
	return ln.Addr().String()
}

// newProxyApp returns an App proxying to upstream (host:port), closed when
// the test ends.
func newProxyApp(t testing.TB, upstream string, timeout time.Duration) *App {
	t.Helper()
	a, err := New(config.App{Upstream: "http://" + upstream, UpstreamTimeout: timeout}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// proxyTo starts an App proxying to upstream behind a worker-like server
// and returns the server's address.
func proxyTo(t testing.TB, upstream string, timeout time.Duration) string {
	t.Helper()
	return serve(t, newProxyApp(t, upstream, timeout).Handler, nil)
}

// do sends req to addr with a plain fasthttp client and returns the
// buffered response.
func do(t testing.TB, addr string, req *fasthttp.Request) *fasthttp.Response {
	t.Helper()
	c := &fasthttp.HostClient{Addr: addr, MaxIdemponentCallAttempts: 1}
	resp := fasthttp.AcquireResponse()
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("%s %s: %v", req.Header.Method(), req.RequestURI(), err)
	}
	return resp
}

func get(t testing.TB, addr, uri string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + uri)
	return do(t, addr, req)
}

// field is one header line as it was on the wire.
type field struct{ k, v string }

// message is an HTTP request or response as it was on the wire.
type message struct {
	start  string // request or status line
	fields []field
	body   []byte
	// chunked reports Transfer-Encoding: chunked framing; untilClose a body
	// that ran to the end of the connection.
	chunked, untilClose bool
}

// get returns the values of the fields named k, compared case-insensitively.
func (m *message) get(k string) []string {
	var vs []string
	for _, f := range m.fields {
		if strings.EqualFold(f.k, k) {
			vs = append(vs, f.v)
		}
	}
	return vs
}

func (m *message) has(k string) bool { return len(m.get(k)) > 0 }

func (m *message) status() int {
	parts := strings.SplitN(m.start, " ", 3)
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// readMessage reads one message from br. Bodies are framed by
// Content-Length or chunked; with neither, a request has no body and a
// response runs until the connection closes. noBody is for answers to HEAD
// and 1xx/204/304.
func readMessage(br *bufio.Reader, isRequest, noBody bool) (*message, error) {
	m := &message{}
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	m.start = strings.TrimRight(line, "\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		m.fields = append(m.fields, field{k, strings.TrimSpace(v)})
	}
	if !isRequest {
		if s := m.status(); s < 200 || s == 204 || s == 304 {
			noBody = true
		}
	}
	if noBody {
		return m, nil
	}
	for _, te := range m.get("Transfer-Encoding") {
		if strings.EqualFold(te, "chunked") {
			m.chunked = true
		}
	}
	switch cl := m.get("Content-Length"); {
	case m.chunked:
		m.body, err = io.ReadAll(httputil.NewChunkedReader(br))
		if err != nil {
			return m, err
		}
		// trailer section
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return m, err
			}
			if line == "\r\n" {
				break
			}
		}
	case len(cl) > 0:
		n, err := strconv.Atoi(cl[0])
		if err != nil {
			return nil, err
		}
		m.body = make([]byte, n)
		if _, err := io.ReadFull(br, m.body); err != nil {
			return m, err
		}
	case !isRequest:
		m.untilClose = true
		m.body, err = io.ReadAll(br)
	}
	return m, err
}

// rawConn is a client connection that writes requests byte for byte.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// roundTrip writes raw (a whole request) and reads the response.
func (rc *rawConn) roundTrip(raw string, head bool) *message {
	rc.t.Helper()
	if err := rc.c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		rc.t.Fatal(err)
	}
	if _, err := io.WriteString(rc.c, raw); err != nil {
		rc.t.Fatal(err)
	}
	m, err := readMessage(rc.br, false, head)
	if err != nil {
		rc.t.Fatalf("reading response to %q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
	}
	return m
}

// rawUpstream is an upstream that records each request as received and
// answers with whatever its respond function writes.
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []*message
}

// startRawUpstream serves keep-alive connections; respond writes the whole
// response for req and reports whether to close the connection afterwards.
func startRawUpstream(t testing.TB, respond func(req *message, w io.Writer) (closeConn bool)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
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
			conns.Store(c, nil)
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
					u.mu.Lock()
					u.reqs = append(u.reqs, req)
					u.mu.Unlock()
					bw := bufio.NewWriter(c)
					closeConn := respond(req, bw)
					if bw.Flush() != nil || closeConn {
						return
					}
				}
			}()
		}
	}()
	return u
}

func (u *rawUpstream) requests() []*message {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*message(nil), u.reqs...)
}

// last returns the last request the upstream got.
func (u *rawUpstream) last(t testing.TB) *message {
	t.Helper()
	reqs := u.requests()
	if len(reqs) == 0 {
		t.Fatal("upstream got no request")
	}
	return reqs[len(reqs)-1]
}

// okResponse is a small fixed answer for raw upstreams.
func okResponse(_ *message, w io.Writer) bool {
	io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	return false
}

// checkPattern verifies that b is bytes [off, off+len(b)) of a /demo/bytes body.
func checkPattern(b []byte, off int64) error {
	for i, c := range b {
		if want := bytesPattern[(off+int64(i))%int64(len(bytesPattern))]; c != want {
			return fmt.Errorf("byte %d is %q, want %q", off+int64(i), c, want)
		}
	}
	return nil
}

func containsFold(s []string, want string) bool {
	for _, v := range s {
		if strings.EqualFold(v, want) {
			return true
		}
	}
	return false
}

// heapWatch samples the heap in use until growth is called.
type heapWatch struct {
	base uint64 // heap in use at the start, after a GC
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

// watchHeap starts sampling the heap in use every tick, after a GC.
func watchHeap(every time.Duration) *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > h.peak.Load() {
					h.peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return h
}

// growth stops the sampling and returns the peak heap in use minus the
// start's.
func (h *heapWatch) growth() int64 {
	close(h.stop)
	<-h.done
	return int64(h.peak.Load()) - int64(h.base)
}
