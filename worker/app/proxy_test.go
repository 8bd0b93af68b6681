package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/config"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     config.App
		wantErr string
	}{
		{"demo", config.App{Demo: true}, ""},
		{"http", config.App{Upstream: "http://127.0.0.1:9000"}, ""},
		{"https default port", config.App{Upstream: "https://example.com"}, ""},
		{"ipv6", config.App{Upstream: "http://[::1]:9000"}, ""},
		{"neither", config.App{}, "no upstream"},
		{"both", config.App{Upstream: "http://127.0.0.1:9000", Demo: true}, "only one"},
		{"scheme", config.App{Upstream: "ftp://127.0.0.1:9000"}, "scheme"},
		{"no host", config.App{Upstream: "http://"}, "no host"},
		{"path", config.App{Upstream: "http://127.0.0.1:9000/api"}, "only scheme, host and port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if err := a.Close(); err != nil { // twice is fine
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewUpstreamAddr(t *testing.T) {
	for upstream, want := range map[string]string{
		"http://127.0.0.1:9000": "127.0.0.1:9000",
		"http://example.com":    "example.com:80",
		"https://example.com/":  "example.com:443",
		"http://[::1]:9000":     "[::1]:9000",
	} {
		a, err := New(config.App{Upstream: upstream}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.proxy.client.Addr; got != want {
			t.Errorf("%s: Addr = %q, want %q", upstream, got, want)
		}
		if got, want := a.proxy.client.IsTLS, strings.HasPrefix(upstream, "https"); got != want {
			t.Errorf("%s: IsTLS = %v, want %v", upstream, got, want)
		}
		a.Close()
	}
}

func TestProxyStatusCodes(t *testing.T) {
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		code, _ := strconv.Atoi(strings.TrimPrefix(string(ctx.Path()), "/status/"))
		ctx.SetStatusCode(code)
		fmt.Fprintf(ctx, "status %d", code)
	}, nil)
	addr := proxyTo(t, up, 5*time.Second)
	for _, code := range []int{200, 201, 404, 500} {
		resp := get(t, addr, fmt.Sprintf("/status/%d", code))
		if resp.StatusCode() != code || string(resp.Body()) != fmt.Sprintf("status %d", code) {
			t.Errorf("status %d: got %d %q", code, resp.StatusCode(), resp.Body())
		}
	}
}

// hopResponse answers with every kind of hop-by-hop header next to
// end-to-end ones.
const hopResponse = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: application/json\r\n" +
	"X-Custom: a\r\n" +
	"x-lower-case: kept\r\n" +
	"X-Multi: 1\r\n" +
	"X-Multi: 2\r\n" +
	"Set-Cookie: a=1; Path=/\r\n" +
	"Set-Cookie: b=\"quoted value\"; Path=/x\r\n" +
	"Cache-Control: no-store\r\n" +
	"Server: upstream/1.0\r\n" +
	"ETag: \"v1\"\r\n" +
	"Connection: keep-alive, X-Hop, x-hop-lower\r\n" +
	"X-Hop: secret\r\n" +
	"X-Hop-Lower: secret\r\n" +
	"Keep-Alive: timeout=5\r\n" +
	"Proxy-Authenticate: Basic realm=x\r\n" +
	"Proxy-Connection: keep-alive\r\n" +
	"Upgrade: h2c\r\n" +
	"Content-Length: 5\r\n" +
	"\r\n" +
	"hello"

func TestProxyResponseHeaders(t *testing.T) {
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, hopResponse)
		return false
	})
	rc := dialRaw(t, proxyTo(t, up.addr, 5*time.Second))
	m := rc.roundTrip("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", false)

	if m.status() != 200 || string(m.body) != "hello" {
		t.Fatalf("got %q %q", m.start, m.body)
	}
	for k, want := range map[string][]string{
		"Content-Type":   {"application/json"},
		"X-Custom":       {"a"},
		"x-lower-case":   {"kept"},
		"X-Multi":        {"1", "2"},
		"Set-Cookie":     {"a=1; Path=/", "b=\"quoted value\"; Path=/x"},
		"Cache-Control":  {"no-store"},
		"Server":         {"upstream/1.0"},
		"ETag":           {"\"v1\""},
		"Content-Length": {"5"},
	} {
		if got := m.get(k); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, f := range m.fields {
		if f.k == "X-Lower-Case" {
			t.Errorf("header name normalized: %q", f.k)
		}
	}
	for _, k := range []string{"Connection", "X-Hop", "X-Hop-Lower", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Connection", "Upgrade", "Transfer-Encoding", "Trailer"} {
		if m.has(k) {
			t.Errorf("hop-by-hop %s reached the client: %q", k, m.get(k))
		}
	}

	// The connection to the client is still good.
	if m := rc.roundTrip("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", false); string(m.body) != "hello" {
		t.Fatalf("second request: %q %q", m.start, m.body)
	}
}

func TestProxyNoDefaultHeaders(t *testing.T) {
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
		return false
	})
	rc := dialRaw(t, proxyTo(t, up.addr, 5*time.Second))
	m := rc.roundTrip("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", false)
	if m.has("Content-Type") {
		t.Errorf("client got a Content-Type the upstream did not send: %q", m.get("Content-Type"))
	}
	req := up.last(t)
	for _, k := range []string{"User-Agent", "Content-Type", "Connection"} {
		if req.has(k) {
			t.Errorf("upstream got %s it was not sent: %q", k, req.get(k))
		}
	}
}

// TestProxyRequestHopByHop runs against worker servers that normalize
// header names and ones that keep them as received.
func TestProxyRequestHopByHop(t *testing.T) {
	for _, keepNames := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepNames=%v", keepNames), func(t *testing.T) {
			up := startRawUpstream(t, okResponse)
			a := newProxyApp(t, up.addr, 5*time.Second)
			addr := serve(t, a.Handler, func(s *fasthttp.Server) { s.DisableHeaderNamesNormalizing = keepNames })
			rc := dialRaw(t, addr)
			m := rc.roundTrip("GET /hop HTTP/1.1\r\n"+
				"Host: example.test\r\n"+
				"Connection: keep-alive, X-Drop, x-drop-lower\r\n"+
				"X-Drop: 1\r\n"+
				"x-drop-lower: 2\r\n"+
				"keep-alive: timeout=5\r\n"+
				"Proxy-Connection: keep-alive\r\n"+
				"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
				"TE: trailers\r\n"+
				"Upgrade: h2c\r\n"+
				"X-Keep: yes\r\n"+
				"Cookie: sid=\"a b\"; theme=dark; odd=x\\y\r\n"+
				"X-Forwarded-For: 203.0.113.7\r\n"+
				"\r\n", false)
			if m.status() != 200 {
				t.Fatalf("got %q", m.start)
			}
			req := up.last(t)
			for _, k := range []string{"Connection", "X-Drop", "X-Drop-Lower", "Keep-Alive", "Proxy-Connection",
				"Proxy-Authorization", "TE", "Upgrade", "Trailer", "Transfer-Encoding"} {
				if req.has(k) {
					t.Errorf("hop-by-hop %s reached the upstream: %q", k, req.get(k))
				}
			}
			for k, want := range map[string]string{
				"Host":              "example.test",
				"X-Keep":            "yes",
				"Cookie":            "sid=\"a b\"; theme=dark; odd=x\\y",
				"X-Forwarded-For":   "203.0.113.7",
				"X-Forwarded-Proto": "http",
			} {
				if got := req.get(k); len(got) != 1 || got[0] != want {
					t.Errorf("upstream %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestProxyRequestTarget(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	rc := dialRaw(t, proxyTo(t, up.addr, 5*time.Second))
	for _, tc := range []struct {
		name, uri, extra string
		want             map[string]string // "" means absent
	}{
		{
			name: "query and path verbatim",
			uri:  "/a/b%2Fc/../d;p?b=2&a=1&a=%20x+y&empty=&flag&u=%E2%9C%93&sl=/%2F",
			want: map[string]string{"X-Forwarded-For": "", "X-Forwarded-Proto": "http"},
		},
		{name: "double slash", uri: "//double//slash?x=1"},
		{name: "root", uri: "/"},
		{
			name:  "forwarded headers kept",
			uri:   "/fwd",
			extra: "X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\nx-forwarded-proto: https\r\n",
			want:  map[string]string{"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Proto": "https"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const host = "Example.TEST:8080"
			m := rc.roundTrip("GET "+tc.uri+" HTTP/1.1\r\nHost: "+host+"\r\n"+tc.extra+"\r\n", false)
			if m.status() != 200 {
				t.Fatalf("got %q", m.start)
			}
			req := up.last(t)
			if want := "GET " + tc.uri + " HTTP/1.1"; req.start != want {
				t.Errorf("upstream request line %q, want %q", req.start, want)
			}
			if got := req.get("Host"); len(got) != 1 || got[0] != host {
				t.Errorf("upstream Host = %q, want %q", got, host)
			}
			for k, want := range tc.want {
				got := req.get(k)
				if want == "" && len(got) > 0 || want != "" && (len(got) != 1 || got[0] != want) {
					t.Errorf("upstream %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestProxyPostBody(t *testing.T) {
	up := startRawUpstream(t, func(req *message, w io.Writer) bool {
		fmt.Fprintf(w, "HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s", len(req.body), req.body)
		return false
	})
	addr := proxyTo(t, up.addr, 5*time.Second)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + "/upload?x=1")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/octet-stream")
	req.SetBody(body)
	resp := do(t, addr, req)
	if resp.StatusCode() != 201 || !bytes.Equal(resp.Body(), body) {
		t.Fatalf("got %d, %d bytes back", resp.StatusCode(), len(resp.Body()))
	}
	got := up.last(t)
	if got.start != "POST /upload?x=1 HTTP/1.1" || !bytes.Equal(got.body, body) {
		t.Fatalf("upstream got %q with %d bytes", got.start, len(got.body))
	}
	if cl := got.get("Content-Length"); len(cl) != 1 || cl[0] != strconv.Itoa(len(body)) {
		t.Errorf("upstream Content-Length = %q", cl)
	}
	if ct := got.get("Content-Type"); len(ct) != 1 || ct[0] != "application/octet-stream" {
		t.Errorf("upstream Content-Type = %q", ct)
	}

	// An empty POST still says so.
	rc := dialRaw(t, addr)
	rc.roundTrip("POST /empty HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false)
	if cl := up.last(t).get("Content-Length"); len(cl) != 1 || cl[0] != "0" {
		t.Errorf("empty POST: upstream Content-Length = %q", cl)
	}
}

// TestProxyStreamedRequestBody covers worker servers that stream request
// bodies: the body goes upstream as a stream, chunked or with its length.
func TestProxyStreamedRequestBody(t *testing.T) {
	up := startRawUpstream(t, func(req *message, w io.Writer) bool {
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(req.body))
		w.Write(req.body)
		return false
	})
	a := newProxyApp(t, up.addr, 5*time.Second)
	addr := serve(t, a.Handler, func(s *fasthttp.Server) { s.StreamRequestBody = true })
	body := strings.Repeat("streamed body ", 100_000) // 1.4 MB

	rc := dialRaw(t, addr)
	m := rc.roundTrip(fmt.Sprintf("PUT /s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body), false)
	if m.status() != 200 || string(m.body) != body {
		t.Fatalf("fixed length: got %q, %d bytes back", m.start, len(m.body))
	}
	if got := up.last(t); string(got.body) != body {
		t.Fatalf("fixed length: upstream got %d bytes", len(got.body))
	}

	chunked := fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 5, "hello", 6, " world")
	m = rc.roundTrip("PUT /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked, false)
	if m.status() != 200 || string(m.body) != "hello world" {
		t.Fatalf("chunked: got %q %q", m.start, m.body)
	}
	if got := up.last(t); string(got.body) != "hello world" {
		t.Fatalf("chunked: upstream got %q (framing %v)", got.body, got.fields)
	}
}

func TestProxyHead(t *testing.T) {
	var methods []string
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		methods = append(methods, string(ctx.Method()))
		ctx.SetContentType("text/plain")
		ctx.SetBodyString(strings.Repeat("x", 1234))
	}, nil)
	rc := dialRaw(t, proxyTo(t, up, 5*time.Second))
	m := rc.roundTrip("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n", true)
	if m.status() != 200 {
		t.Fatalf("got %q", m.start)
	}
	if cl := m.get("Content-Length"); len(cl) != 1 || cl[0] != "1234" {
		t.Errorf("HEAD Content-Length = %q, want 1234", cl)
	}
	// No body bytes leaked into the connection: the next answer parses.
	m = rc.roundTrip("GET /h HTTP/1.1\r\nHost: h\r\n\r\n", false)
	if len(m.body) != 1234 {
		t.Fatalf("GET after HEAD: %q, %d bytes", m.start, len(m.body))
	}
	if fmt.Sprint(methods) != "[HEAD GET]" {
		t.Errorf("upstream saw %v", methods)
	}
}

func TestProxyNoBodyStatuses(t *testing.T) {
	up := startRawUpstream(t, func(req *message, w io.Writer) bool {
		switch req.start {
		case "GET /204 HTTP/1.1":
			io.WriteString(w, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
		case "GET /304 HTTP/1.1":
			io.WriteString(w, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n")
		default:
			okResponse(req, w)
		}
		return false
	})
	rc := dialRaw(t, proxyTo(t, up.addr, 5*time.Second))
	for _, tc := range []struct {
		uri        string
		status     int
		key, value string
	}{
		{"/204", 204, "X-A", "1"},
		{"/304", 304, "ETag", "\"v1\""},
	} {
		m := rc.roundTrip("GET "+tc.uri+" HTTP/1.1\r\nHost: h\r\n\r\n", false)
		if m.status() != tc.status {
			t.Fatalf("%s: got %q", tc.uri, m.start)
		}
		if v := m.get(tc.key); len(v) != 1 || v[0] != tc.value {
			t.Errorf("%s: %s = %q", tc.uri, tc.key, v)
		}
		if m.has("Transfer-Encoding") || tc.status == 204 && m.has("Content-Length") {
			t.Errorf("%s: framing headers on a body-less answer: %v", tc.uri, m.fields)
		}
		// Nothing followed the header: the next exchange on the connection works.
		if m := rc.roundTrip("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n", false); string(m.body) != "ok" {
			t.Fatalf("after %s: %q %q", tc.uri, m.start, m.body)
		}
	}
}

func TestProxyChunked(t *testing.T) {
	const chunks = 100
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range chunks {
				fmt.Fprintf(w, "chunk %03d\n", i)
				w.Flush()
			}
		})
	}, nil)
	rc := dialRaw(t, proxyTo(t, up, 5*time.Second))
	for range 2 { // the second proves the connection survived the first
		m := rc.roundTrip("GET /c HTTP/1.1\r\nHost: h\r\n\r\n", false)
		if m.status() != 200 || !m.chunked {
			t.Fatalf("got %q, chunked=%v", m.start, m.chunked)
		}
		if n := bytes.Count(m.body, []byte("\n")); n != chunks || !bytes.HasPrefix(m.body, []byte("chunk 000\n")) {
			t.Fatalf("body has %d lines: %q...", n, m.body[:min(len(m.body), 40)])
		}
	}
}

func TestProxyBodyUntilClose(t *testing.T) {
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ends when the connection does")
		return true
	})
	rc := dialRaw(t, proxyTo(t, up.addr, 5*time.Second))
	for range 2 {
		m := rc.roundTrip("GET / HTTP/1.1\r\nHost: h\r\n\r\n", false)
		if m.status() != 200 || string(m.body) != "no length, ends when the connection does" {
			t.Fatalf("got %q %q", m.start, m.body)
		}
		if !m.chunked || m.has("Connection") {
			t.Fatalf("want a chunked keep-alive answer, got %v", m.fields)
		}
	}
}

func TestProxyRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	resp := get(t, proxyTo(t, closed, 5*time.Second), "/")
	if resp.StatusCode() != 502 || !strings.Contains(string(resp.Body()), "refused") {
		t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
	}
	if strings.Contains(string(resp.Body()), closed) {
		t.Errorf("error body shows the upstream address: %q", resp.Body())
	}
}

func TestProxyTimeout(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		<-release
	}, nil)
	t.Cleanup(func() { close(release) }) // runs before the server's shutdown

	addr := proxyTo(t, up, 200*time.Millisecond)
	start := time.Now()
	resp := get(t, addr, "/hang")
	elapsed := time.Since(start)
	if resp.StatusCode() != 504 {
		t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
	}
	if elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("504 after %v, want about 200ms", elapsed)
	}
	time.Sleep(300 * time.Millisecond) // room for a retry, if there were one
	if n := hits.Load(); n != 1 {
		t.Fatalf("upstream hit %d times, want exactly 1", n)
	}
}

func TestProxyUpstreamClosesWithoutAnswer(t *testing.T) {
	up := startRawUpstream(t, func(*message, io.Writer) bool { return true })
	addr := proxyTo(t, up.addr, 5*time.Second)
	for i, method := range []string{"GET", "POST"} {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + addr + "/")
		req.Header.SetMethod(method)
		resp := do(t, addr, req)
		fasthttp.ReleaseRequest(req)
		if resp.StatusCode() != 502 || !strings.Contains(string(resp.Body()), "closed") {
			t.Fatalf("%s: got %d %q", method, resp.StatusCode(), resp.Body())
		}
		if n := len(up.requests()); n != i+1 {
			t.Fatalf("%s: upstream got %d requests in all, want %d (no retry)", method, n, i+1)
		}
	}
}

// TestProxyBodyStall checks that upstream_timeout also bounds a body that
// stops arriving: the client gets a cut-off response, not a hang.
func TestProxyBodyStall(t *testing.T) {
	release := make(chan struct{})
	up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
		w.(*bufio.Writer).Flush()
		<-release
		return true
	})
	t.Cleanup(func() { close(release) })
	rc := dialRaw(t, proxyTo(t, up.addr, 200*time.Millisecond))
	io.WriteString(rc.c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	rc.c.SetDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	m, err := readMessage(rc.br, false, false)
	if err == nil {
		t.Fatalf("got a whole response: %q, %d bytes", m.start, len(m.body))
	}
	var ne net.Error
	if ok := asNetError(err, &ne); ok && ne.Timeout() {
		t.Fatalf("client still waiting after %v: the stalled body was not cut off", time.Since(start))
	}
}

// TestProxySlowStream checks that upstream_timeout runs between reads of
// the body, not over the whole transfer: a stream that sends a chunk every
// 300 ms for 3 s passes under a 1 s timeout, one that stalls for 2 s is
// cut off (issue 15, LOW).
func TestProxySlowStream(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gaps     []time.Duration
		complete bool
	}{
		{"moving", repeatDur(300*time.Millisecond, 10), true},
		{"stalled", []time.Duration{300 * time.Millisecond, 2 * time.Second, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := startRawUpstream(t, func(_ *message, w io.Writer) bool {
				bw := w.(*bufio.Writer)
				io.WriteString(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				bw.Flush()
				for _, gap := range tc.gaps {
					time.Sleep(gap)
					io.WriteString(bw, "6\r\nchunk\n\r\n")
					if bw.Flush() != nil {
						return false
					}
				}
				io.WriteString(bw, "0\r\n\r\n")
				bw.Flush()
				return true
			})
			rc := dialRaw(t, proxyTo(t, up.addr, time.Second))
			io.WriteString(rc.c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			rc.c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			m, err := readMessage(rc.br, false, false)
			took := time.Since(start)
			if tc.complete {
				if err != nil || len(m.body) != 6*len(tc.gaps) {
					t.Fatalf("after %v: err %v, %d body bytes; want the whole %d-byte stream", took, err, len(m.body), 6*len(tc.gaps))
				}
				return
			}
			if err == nil {
				t.Fatalf("got a whole response after a 2 s stall: %q, %d bytes", m.start, len(m.body))
			}
			if took > 1800*time.Millisecond {
				t.Errorf("cut off after %v, want about 1.3 s (upstream_timeout after the last chunk)", took)
			}
		})
	}
}

func repeatDur(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func asNetError(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

// TestProxyLargeBody streams 100 MB upstream → app → client and checks
// that the process's heap stays far below the body size. Upstream, app and
// client share this process, so all three stream.
func TestProxyLargeBody(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("100 MB through the race detector is too slow")
	}
	const size = 100 << 20
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.SetBodyStream(&patternReader{n: size}, size)
	}, nil)
	addr := proxyTo(t, up, 60*time.Second)

	heap := watchHeap(5 * time.Millisecond)

	c := &fasthttp.HostClient{Addr: addr, StreamResponseBody: true, MaxIdemponentCallAttempts: 1}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + "/big")
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.DoTimeout(req, resp, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 || resp.Header.ContentLength() != size {
		t.Fatalf("got %d with Content-Length %d", resp.StatusCode(), resp.Header.ContentLength())
	}
	buf := make([]byte, 64<<10)
	var off int64
	body := resp.BodyStream()
	for {
		n, err := body.Read(buf)
		if perr := checkPattern(buf[:n], off); perr != nil {
			t.Fatal(perr)
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", off, err)
		}
	}
	resp.CloseBodyStream()
	growth := heap.growth()
	if off != size {
		t.Fatalf("read %d bytes, want %d", off, size)
	}
	t.Logf("heap in use: %d MiB before, peak growth %d KiB while streaming %d MiB",
		heap.base>>20, growth>>10, size>>20)
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MiB while streaming %d MiB", growth>>20, size>>20)
	}
}
