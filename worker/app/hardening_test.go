package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/cleanconn"
	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/shared/upstream"
	"github.com/lanes-dev/lanes/worker/internal/dataplane"
)

// The tests in this file put the app behind dataplane.NewServer, the server a
// worker runs, on a unix socket, as the front sees it.

// serveWorker runs h on the worker's data-plane server until the test ends
// and returns the socket path.
func serveWorker(t testing.TB, h fasthttp.RequestHandler, log hclog.Logger, lim dataplane.Limits) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := dataplane.NewServer(h, log, lim)
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
	return sock
}

// workerTo starts an App for cfg (Upstream is set to upstream) behind a
// worker server and returns the socket path.
func workerTo(t testing.TB, upstream string, cfg config.App, log hclog.Logger, lim dataplane.Limits) string {
	t.Helper()
	cfg.Upstream = "http://" + upstream
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 5 * time.Second
	}
	if log == nil {
		log = testLogger(t)
	}
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return serveWorker(t, a.Handler, log, lim)
}

func dialUnix(t testing.TB, sock string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// scriptedOrigin answers the first request of its first connection with
// first, then closes the connection (with a reset when rst); every later
// connection gets a small 200.
type scriptedOrigin struct {
	addr  string
	conns atomic.Int32
}

func startScriptedOrigin(t testing.TB, first string, rst bool) *scriptedOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &scriptedOrigin{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := o.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := readMessage(br, true, false); err != nil {
						return
					}
					if n == 1 {
						io.WriteString(c, first)
						if rst {
							c.(*net.TCPConn).SetLinger(0)
						}
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return o
}

// TestWorkerCutResponse: an upstream that dies in the middle of a body
// must leave the front with a response it can tell is cut, never a
// complete-looking one, and must not leave a dead connection in the pool.
func TestWorkerCutResponse(t *testing.T) {
	for _, tc := range []struct {
		name, resp string
		rst        bool
	}{
		{"chunked, cut between chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", false},
		{"chunked, cut in a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nabc", false},
		{"chunked, cut after the last chunk's size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", false},
		{"content-length short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello", false},
		{"content-length short, large", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 50000), false},
		{"until close, reset", "HTTP/1.1 200 OK\r\n\r\nhello", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startScriptedOrigin(t, tc.resp, tc.rst)
			sock := workerTo(t, o.addr, config.App{}, nil, dataplane.Limits{})
			rc := dialUnix(t, sock)
			io.WriteString(rc.c, "GET /cut HTTP/1.1\r\nHost: h\r\n\r\n")
			rc.c.SetDeadline(time.Now().Add(5 * time.Second))
			m, err := readMessage(rc.br, false, false)
			if err == nil {
				t.Fatalf("the front got a complete response: %q %v %q", m.start, m.fields, m.body)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the worker left the connection open: %v", err)
			}
			// The worker is fine and its pool holds no dead connection.
			rc = dialUnix(t, sock)
			if m := rc.roundTrip("GET /next HTTP/1.1\r\nHost: h\r\n\r\n", false); m.status() != 200 || string(m.body) != "ok" {
				t.Fatalf("next request: %q %q", m.start, m.body)
			}
		})
	}
}

// uploadOrigin reads request bodies to the end without keeping them and
// answers with their length and the framing they came with.
func startUploadOrigin(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var req fasthttp.Request
				req.Header.DisableNormalizing()
				br := bufio.NewReaderSize(c, 64<<10)
				for {
					req.Reset()
					if err := req.Header.Read(br); err != nil {
						return
					}
					if err := req.ContinueReadBodyStream(br, 1, false); err != nil {
						return
					}
					n, err := io.Copy(io.Discard, req.BodyStream())
					if err != nil {
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(strconv.FormatInt(n, 10)))
					fmt.Fprint(c, n)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestWorkerUploadStreams: a large upload goes through the worker without
// being held in memory (it was buffered whole: 16 parallel 50 MB uploads
// took a worker to ~550 MB).
func TestWorkerUploadStreams(t *testing.T) {
	size := int64(50 << 20)
	if raceEnabled || testing.Short() {
		size = 4 << 20 // the path, without the memory figure
	}
	sock := workerTo(t, startUploadOrigin(t), config.App{}, hclog.NewNullLogger(), dataplane.Limits{MaxBodySize: 64 << 20})

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			heap := watchHeap(2 * time.Millisecond)

			rc := dialUnix(t, sock)
			rc.c.SetDeadline(time.Now().Add(60 * time.Second))
			bw := bufio.NewWriterSize(rc.c, 64<<10)
			if chunked {
				io.WriteString(bw, "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
			} else {
				fmt.Fprintf(bw, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", size)
			}
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
			for sent := int64(0); sent < size; sent += int64(len(chunk)) {
				if chunked {
					fmt.Fprintf(bw, "%x\r\n", len(chunk))
				}
				if _, err := bw.Write(chunk); err != nil {
					t.Fatalf("after %d bytes: %v", sent, err)
				}
				if chunked {
					io.WriteString(bw, "\r\n")
				}
			}
			if chunked {
				io.WriteString(bw, "0\r\n\r\n")
			}
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			m, err := readMessage(rc.br, false, false)
			growth := heap.growth()
			if err != nil {
				t.Fatal(err)
			}
			if m.status() != 200 || string(m.body) != strconv.FormatInt(size, 10) {
				t.Fatalf("got %q %q, want the origin to count %d bytes", m.start, m.body, size)
			}
			t.Logf("heap in use: %d MiB before, peak growth %d KiB while uploading %d MiB",
				heap.base>>20, growth>>10, size>>20)
			if !raceEnabled && growth > 16<<20 {
				t.Fatalf("heap grew by %d MiB during a %d MiB upload", growth>>20, size>>20)
			}
		})
	}
}

// TestWorkerBodyLimit: with streamed bodies fasthttp no longer refuses a
// body over MaxRequestBodySize; the worker does.
func TestWorkerBodyLimit(t *testing.T) {
	const limit = 64 << 10
	var got atomic.Int32
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		got.Add(1)
		ctx.SetBodyString(strconv.Itoa(len(ctx.PostBody())))
	}, func(s *fasthttp.Server) { s.MaxRequestBodySize = 1 << 20 })
	sock := workerTo(t, up, config.App{}, nil, dataplane.Limits{MaxBodySize: limit})

	chunkedBody := func(n int) string {
		var b strings.Builder
		for n > 0 {
			k := min(n, 4096)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", k, strings.Repeat("c", k))
			n -= k
		}
		return b.String() + "0\r\n\r\n"
	}
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"length at the limit", fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", limit, strings.Repeat("a", limit)), 200},
		{"length over", fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", limit+1, strings.Repeat("a", limit+1)), 413},
		{"chunked at the limit", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody(limit), 200},
		{"chunked over", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody(limit+1), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := got.Load()
			rc := dialUnix(t, sock)
			m := rc.roundTrip(tc.req, false)
			if m.status() != tc.status {
				t.Fatalf("got %q %q, want %d", m.start, m.body, tc.status)
			}
			if tc.status == 200 && string(m.body) != strconv.Itoa(limit) {
				t.Fatalf("upstream got %s bytes", m.body)
			}
			if tc.status == 413 && got.Load() != before {
				t.Fatalf("the upstream handler ran for an oversized body")
			}
		})
	}
}

// TestWorkerNoInventedHeaders: "no header" passes as no header, both ways,
// through the worker's own server.
func TestWorkerNoInventedHeaders(t *testing.T) {
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
		return false
	})
	rc := dialUnix(t, workerTo(t, up.addr, config.App{}, nil, dataplane.Limits{}))
	for _, raw := range []string{
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /x HTTP/1.0\r\n\r\n",
	} {
		m := rc.roundTrip(raw, false)
		line := strings.SplitN(raw, "\r\n", 2)[0]
		for _, k := range []string{"Content-Type", "Server", "Date"} {
			if m.has(k) {
				t.Errorf("%s: the front got %s the upstream did not send: %q", line, k, m.get(k))
			}
		}
		req := up.last(t)
		for _, k := range []string{"Content-Type", "User-Agent", "Connection"} {
			if req.has(k) {
				t.Errorf("%s: upstream got %s it was not sent: %q", line, k, req.get(k))
			}
		}
		if strings.HasPrefix(line, "GET") {
			rc = dialUnix(t, rc.c.RemoteAddr().String()) // HTTP/1.0 closed it
		}
	}
}

// TestProxyForwardingHeaders pins what the worker does with the headers
// the front sets (X-Forwarded-For appended to, X-Forwarded-Proto and
// X-Forwarded-Host replaced) and with odd names.
func TestProxyForwardingHeaders(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	sock := workerTo(t, up.addr, config.App{}, nil, dataplane.Limits{})
	for _, tc := range []struct {
		name, headers string
		want          map[string][]string // nil: absent
	}{
		{
			name:    "copies of X-Forwarded-For joined in order",
			headers: "X-Forwarded-For: 203.0.113.1\r\nx-forwarded-for: 198.51.100.2, 10.0.0.3\r\nX-FORWARDED-FOR: 127.0.0.1\r\n",
			want:    map[string][]string{"X-Forwarded-For": {"203.0.113.1, 198.51.100.2, 10.0.0.3, 127.0.0.1"}},
		},
		{
			name:    "Connection-listed X-Forwarded-For goes before the join",
			headers: "Connection: x-forwarded-for\r\nX-Forwarded-For: 203.0.113.1\r\n",
			want:    map[string][]string{"X-Forwarded-For": nil, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:    "one X-Forwarded-Proto, the front's (last)",
			headers: "x-forwarded-proto: https\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.test\r\n",
			want:    map[string][]string{"X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"example.test"}},
		},
		{
			name:    "underscores dropped",
			headers: "X_Forwarded_For: 6.6.6.6\r\nX-Real-IP: 10.0.0.9\r\nx_user: admin\r\n",
			want:    map[string][]string{"X_Forwarded_For": nil, "x_user": nil, "X-Real-IP": {"10.0.0.9"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialUnix(t, sock)
			if m := rc.roundTrip("GET /f HTTP/1.1\r\nHost: h\r\n"+tc.headers+"\r\n", false); m.status() != 200 {
				t.Fatalf("got %q", m.start)
			}
			req := up.last(t)
			for k, want := range tc.want {
				var got []string
				for _, f := range req.fields {
					if strings.EqualFold(f.k, k) {
						got = append(got, f.v)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("upstream %s = %q, want %q (all: %v)", k, got, want, req.fields)
				}
			}
		})
	}

	t.Run("underscores kept when configured", func(t *testing.T) {
		sock := workerTo(t, up.addr, config.App{UnderscoresInHeaders: true}, nil, dataplane.Limits{})
		rc := dialUnix(t, sock)
		rc.roundTrip("GET /u HTTP/1.1\r\nHost: h\r\nx_user: a\r\n\r\n", false)
		if got := up.last(t).get("x_user"); fmt.Sprint(got) != "[a]" {
			t.Fatalf("x_user = %q", got)
		}
	})

	t.Run("header name not a token", func(t *testing.T) {
		before := len(up.requests())
		rc := dialUnix(t, sock)
		m := rc.roundTrip("GET /bad HTTP/1.1\r\nHost: h\r\nX Bad: 1\r\n\r\n", false)
		if m.status() != 400 {
			t.Fatalf("got %q, want 400", m.start)
		}
		if len(up.requests()) != before {
			t.Fatalf("forwarded: %v", up.last(t).fields)
		}
	})
}

// TestProxyAbsoluteTarget: an absolute-form target sends its path and
// query upstream; the Host header stays the request's, and userinfo never
// becomes credentials.
func TestProxyAbsoluteTarget(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	rc := dialUnix(t, workerTo(t, up.addr, config.App{}, nil, dataplane.Limits{}))
	for target, want := range map[string]string{
		"https://other.test/p/q?x=1":        "/p/q?x=1",
		"http://user:secret@other.test/a?b": "/a?b",
		"http://other.test":                 "/",
		"http://other.test?x=1":             "/?x=1",
		"//user:secret@other.test/dbl":      "//user:secret@other.test/dbl",
	} {
		m := rc.roundTrip("GET "+target+" HTTP/1.1\r\nHost: example.test\r\n\r\n", false)
		if m.status() != 200 {
			t.Fatalf("%s: got %q %q", target, m.start, m.body)
		}
		req := up.last(t)
		if req.start != "GET "+want+" HTTP/1.1" {
			t.Errorf("%s: upstream request line %q, want target %q", target, req.start, want)
		}
		if h := req.get("Host"); fmt.Sprint(h) != "[example.test]" {
			t.Errorf("%s: upstream Host %q", target, h)
		}
		if req.has("Authorization") {
			t.Errorf("%s: userinfo became Authorization: %q", target, req.get("Authorization"))
		}
	}
}

// TestProxyRequestTrailers: trailers of a chunked request never become
// headers upstream.
func TestProxyRequestTrailers(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	rc := dialUnix(t, workerTo(t, up.addr, config.App{}, nil, dataplane.Limits{}))
	m := rc.roundTrip("POST /t HTTP/1.1\r\nHost: h\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-T: evil\r\n\r\n", false)
	if m.status() != 200 {
		t.Fatalf("got %q", m.start)
	}
	req := up.last(t)
	if string(req.body) != "hello" {
		t.Fatalf("upstream body %q", req.body)
	}
	for _, k := range []string{"X-T", "Trailer"} {
		if req.has(k) {
			t.Errorf("upstream got %s: %q", k, req.get(k))
		}
	}
}

// TestProxyUpgrade: upgrades are refused, and an upstream that switches
// protocols anyway gets its connection closed, never pooled.
func TestProxyUpgrade(t *testing.T) {
	up := startRawUpstream(t, func(req *message, w io.Writer) bool {
		if req.start == "GET /switch HTTP/1.1" {
			// Answer as an upgraded server would, then keep the connection
			// and speak no more HTTP on it.
			io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			return false
		}
		if req.start == "GET /continue-switch HTTP/1.1" {
			io.WriteString(w, "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
			return false
		}
		return okResponse(req, w)
	})
	sock := workerTo(t, up.addr, config.App{UpstreamTimeout: 2 * time.Second}, nil, dataplane.Limits{})

	rc := dialUnix(t, sock)
	m := rc.roundTrip("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", false)
	if m.status() != 501 || !strings.Contains(string(m.body), "not supported") {
		t.Fatalf("upgrade request: got %q %q, want 501", m.start, m.body)
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}

	for _, path := range []string{"/switch", "/continue-switch"} {
		rc = dialUnix(t, sock)
		m = rc.roundTrip("GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n", false)
		if m.status() != 502 {
			t.Fatalf("%s: got %q %v, want 502", path, m.start, m.fields)
		}
		// Were the switched connection pooled, this would wait on it until
		// the upstream timeout.
		start := time.Now()
		m = rc.roundTrip("GET /after HTTP/1.1\r\nHost: h\r\n\r\n", false)
		if m.status() != 200 || time.Since(start) > time.Second {
			t.Fatalf("%s: request after the switch: %q after %v", path, m.start, time.Since(start))
		}
	}
}

func TestUpstreamConnSniff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   bool
	}{
		{"200", []string{"HTTP/1.1 200 OK\r\n\r\n"}, false},
		{"101", []string{"HTTP/1.1 101 Switching Protocols\r\n\r\n"}, true},
		{"101 split", []string{"HTT", "P/1.1 1", "01 S"}, true},
		{"100 then 101", []string{"HTTP/1.1 100 Continue\r\n", "X: 1\r\n\r", "\nHTTP/1.1 101 X\r\n\r\n"}, true},
		{"100 then 200", []string{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"}, false},
		{"101 in a body", []string{"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nHTTP/1.1 101 Switching\r\n\r\n"}, false},
	} {
		var tr cleanconn.Tracker
		tr.Write([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
		got := false
		for _, ch := range tc.chunks {
			tr.Read([]byte(ch))
			got = got || tr.Switched()
		}
		if got != tc.want {
			t.Errorf("%s: sniff = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestProxyInternalHeaders: the upstream cannot set lanes' own headers.
func TestProxyInternalHeaders(t *testing.T) {
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Lanes-Filter-Us: 999999999\r\nx-lanes-anything: 1\r\nX-Lane: kept\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	rc := dialUnix(t, workerTo(t, up.addr, config.App{}, nil, dataplane.Limits{}))
	m := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n", false)
	for _, f := range m.fields {
		if strings.HasPrefix(strings.ToLower(f.k), "x-lanes-") {
			t.Errorf("internal header from the upstream reached the front: %s: %s", f.k, f.v)
		}
	}
	if got := m.get("X-Lane"); fmt.Sprint(got) != "[kept]" {
		t.Errorf("X-Lane = %q", got)
	}
}

// TestWorkerLogsUnderAttack: failures are logged once a second, not once
// per request, and credentials never reach the log. (fasthttp refuses
// control characters in a request line; logging.Quote escapes any that
// would get through, see its test.)
func TestWorkerLogsUnderAttack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	var out syncBuf
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	sock := workerTo(t, closed, config.App{}, log, dataplane.Limits{})
	rc := dialUnix(t, sock)
	const n = 300
	for i := range n {
		m := rc.roundTrip(fmt.Sprintf("GET /p/%d HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer SECRET-TOKEN\r\nCookie: sid=SECRET-COOKIE\r\n\r\n", i), false)
		if m.status() != 502 {
			t.Fatalf("got %q", m.start)
		}
	}
	// A request fasthttp cannot parse: it would log the raw header.
	bad := dialUnix(t, sock)
	io.WriteString(bad.c, "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer SECRET-TOKEN\r\nno colon here\r\n\r\n")
	bad.c.SetDeadline(time.Now().Add(2 * time.Second))
	io.ReadAll(bad.br)

	time.Sleep(100 * time.Millisecond)
	text := out.String()
	if c := strings.Count(text, "upstream request failed"); c == 0 || c > 3 {
		t.Errorf("%d requests logged %d failure lines:\n%s", n, c, text)
	}
	for _, secret := range []string{"SECRET-TOKEN", "SECRET-COOKIE"} {
		if strings.Contains(text, secret) {
			t.Errorf("the log holds %q:\n%s", secret, text)
		}
	}
	t.Logf("log:\n%s", text)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDialUpstreamTLS: the upstream connection wrapper does TLS itself, so
// it sees plaintext, and fasthttp takes the connection as TLS already done.
func TestDialUpstreamTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls ok "+r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	addr := strings.TrimPrefix(srv.URL, "https://")
	c := &fasthttp.HostClient{
		Addr: addr, IsTLS: true, MaxIdemponentCallAttempts: 1,
		DialTimeout: upstream.Dial(true, &tls.Config{ServerName: "example.com", RootCAs: pool}),
	}
	for range 2 {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("https://" + addr + "/x?y=1")
		resp := fasthttp.AcquireResponse()
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if string(resp.Body()) != "tls ok /x?y=1" {
			t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
		}
		if _, ok := resp.LocalAddr().(*upstream.Addr); !ok {
			t.Fatalf("response's LocalAddr is a %T, not the wrapper's", resp.LocalAddr())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}
