package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// The direct upstream mode (app { direct = true }, issue 16): the front
// proxies to the upstream itself, with the lane's slots, queue and hard
// timeout, and no worker process.

func directConfig(upstream, lanes string) string {
	return fmt.Sprintf("app {\n  upstream = %q\n  direct   = true\n}\n%s", upstream, lanes)
}

// exchange is what a client and the upstream saw of one request.
type exchange struct {
	Status  int
	Header  http.Header // the client's response header, less Date
	Body    string      // or its length and sha256 when large
	Seen    *seen       // what /echo saw
	Problem string
}

// exchanges runs the same requests through a lanesd and records them.
func exchanges(t *testing.T, l *lanesd) map[string]exchange {
	t.Helper()
	out := map[string]exchange{}
	record := func(name string, resp *http.Response, body []byte, err error) {
		if err != nil {
			out[name] = exchange{Problem: err.Error()}
			return
		}
		h := resp.Header.Clone()
		h.Del("Date")
		e := exchange{Status: resp.StatusCode, Header: h}
		if len(body) > 4096 {
			e.Body = fmt.Sprintf("%d bytes", len(body))
		} else {
			e.Body = string(body)
		}
		var s seen
		if json.Unmarshal(body, &s) == nil && s.Method != "" {
			e.Seen = &s
			e.Body = ""
			delete(e.Header, "Content-Length") // the echo's length depends on its header values
		}
		out[name] = e
	}
	send := func(name, method, path string, body io.Reader, hdr http.Header, chunked bool) {
		req, _ := http.NewRequest(method, l.URL(path), body)
		req.Host = "app.example" // the same for both lanesds
		for k, v := range hdr {
			req.Header[k] = v
		}
		if chunked {
			req.ContentLength = -1
		}
		resp, err := l.client.Do(req)
		if err != nil {
			record(name, nil, nil, err)
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		record(name, resp, b, err)
	}
	hdr := http.Header{
		"X-Request-Thing": {"one"}, "X-Multi": {"m1", "m2"}, "Cookie": {"sid=abc; theme=dark"},
		"Authorization": {"Bearer t"}, "X-Forwarded-For": {"203.0.113.7"}, "X_Under": {"dropped"},
		"X-Forwarded-Proto": {"https"}, "Forwarded": {"for=1.2.3.4"},
	}
	send("GET echo", "GET", "/echo?a=1&b=%20x&q=%E2%9C%93&~=~", nil, hdr, false)
	send("POST 1MB", "POST", "/echo?upload=1", pattern(1<<20), http.Header{"Content-Type": {"application/octet-stream"}}, false)
	send("POST chunked", "POST", "/echo?chunked=1", pattern(300<<10), nil, true)
	send("POST no type", "POST", "/echo", strings.NewReader("x=1"), nil, false)
	send("HEAD", "HEAD", "/bytes?n=12345", nil, nil, false)
	send("GET 3MB", "GET", "/bytes?n=3145728", nil, nil, false)
	send("GET small", "GET", "/bytes?n=104", nil, nil, false)
	send("cookies", "GET", "/cookies", nil, nil, false)
	for _, code := range []string{"204", "301", "404", "500"} {
		send("status "+code, "GET", "/status/"+code, nil, nil, false)
	}
	send("internal header", "GET", "/internal", nil, nil, false)
	send("until close", "GET", "/close", nil, nil, false)
	raw := "GET /echo?raw=1 HTTP/1.1\r\nHost: App.Example\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\n" +
		"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic Zm9v\r\nX-End: kept\r\n\r\n"
	resp, body, err := readResponse(l.Front, raw, 10*time.Second)
	record("raw hop-by-hop", resp, body, err)
	raw10 := "GET /echo?v=10 HTTP/1.0\r\nHost: app.example\r\n\r\n"
	resp, body, err = readResponse(l.Front, raw10, 10*time.Second)
	record("raw HTTP/1.0", resp, body, err)
	if resp != nil && resp.Proto != "HTTP/1.0" && resp.Proto != "HTTP/1.1" {
		t.Errorf("HTTP/1.0 request answered with %s", resp.Proto)
	}
	return out
}

// directOrigin is proxyUpstream plus what only a proxy's response handling
// shows: a forged X-Lanes- header and a body that ends with the connection.
func directOrigin(t *testing.T) *httptest.Server {
	base := proxyUpstream(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/internal":
			w.Header().Set("X-Lanes-Filter-Us", "99999999")
			w.Header().Set("X-Lanes-Theme", "off")
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "hop")
			w.Write([]byte("internal\n"))
		case "/close":
			hj, _, _ := w.(http.Hijacker).Hijack()
			hj.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nbody until close\n"))
			hj.Close()
		default:
			// the rest as proxyUpstream answers it
			req, _ := http.NewRequest(r.Method, base.URL+r.URL.RequestURI(), r.Body)
			req.Header = r.Header.Clone()
			req.Host = r.Host
			if r.ContentLength == -1 {
				req.TransferEncoding = []string{"chunked"}
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}
	}))
	t.Cleanup(up.Close)
	return up
}

// TestDirectProxyParity: the same requests through the worker hop and
// through direct mode reach the same origin with the same headers, and
// the client gets the same answers.
func TestDirectProxyParity(t *testing.T) {
	t.Parallel()
	up := directOrigin(t)
	lanes := "lane \"default\" {\n  min_workers = 2\n}\n"
	hop := startLanesd(t, fmt.Sprintf("app {\n  upstream = %q\n}\n%s", up.URL, lanes))
	dir := startLanesd(t, directConfig(up.URL, lanes))

	a, b := exchanges(t, hop), exchanges(t, dir)
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		x, y := a[name], b[name]
		if x.Problem != "" || x.Status == 0 {
			t.Errorf("%s via the worker hop: %+v", name, x)
			continue
		}
		if !reflect.DeepEqual(x, y) {
			xj, _ := json.MarshalIndent(x, "", " ")
			yj, _ := json.MarshalIndent(y, "", " ")
			t.Errorf("%s differs:\nworker hop: %s\ndirect:     %s", name, xj, yj)
		}
	}
	if e := b["GET echo"]; e.Seen != nil {
		h := http.Header(e.Seen.Header)
		if h.Get("X_under") != "" || h.Get("Forwarded") != "" || h.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("direct: the upstream saw X_Under %q, Forwarded %q, X-Forwarded-Proto %q", h.Get("X_under"), h.Get("Forwarded"), h.Get("X-Forwarded-Proto"))
		}
		if xff := strings.Join(h.Values("X-Forwarded-For"), ", "); xff != "203.0.113.7, 127.0.0.1" {
			t.Errorf("direct: X-Forwarded-For %q", xff)
		}
	}
	if e := b["internal header"]; e.Header.Get("X-Lanes-Filter-Us") != "" || e.Header.Get("X-Private") != "" {
		t.Errorf("direct passed on an upstream's X-Lanes-Filter-Us or a Connection-named field: %v", e.Header)
	}
	if e := b["POST chunked"]; e.Seen == nil || e.Seen.BodyLen != 300<<10 || e.Seen.BodySHA != patternSHA(300<<10) {
		t.Errorf("direct chunked POST: %+v", e)
	}
	if e := b["GET 3MB"]; e.Body != "3145728 bytes" {
		t.Errorf("direct 3 MB GET: %q", e.Body)
	}
}

// TestDirectStatusNoWorkers: a direct, unthemed config starts no worker
// process; the status shows slots instead.
func TestDirectStatusNoWorkers(t *testing.T) {
	t.Parallel()
	up := proxyUpstream(t)
	l := startLanesd(t, directConfig(up.URL, `
lane "default" {
  min_workers = 2
  max_workers = 3
  concurrency = 4
}
`))
	l.mustGet(t, "/cookies", 200)
	if d := descendants(l.PID); len(d) != 0 {
		t.Errorf("lanesd in direct mode has child processes %v; want none", d)
	}
	st := l.status(t)
	if len(st.Lanes) != 1 {
		t.Fatalf("lanes: %+v", st.Lanes)
	}
	ls := st.Lanes[0]
	if !ls.Direct || ls.Slots != 12 || len(ls.Workers) != 0 || ls.Served < 1 {
		t.Errorf("status of a direct lane: direct=%v slots=%d workers=%d served=%d; want true, 12 (3 × 4), 0, ≥ 1",
			ls.Direct, ls.Slots, len(ls.Workers), ls.Served)
	}
	// Resize changes the slots; drain has nothing to replace.
	l.resize(t, "default", api.ResizeRequest{MaxWorkers: new(5)})
	l.drain(t, "default")
	if s := l.status(t).Lanes[0].Slots; s != 20 {
		t.Errorf("slots after resize to max_workers 5: %d, want 20", s)
	}
	l.mustGet(t, "/cookies", 200)
}

// TestDirectHungUpstream: a request the upstream never answers gets 504 at
// the lane's request_timeout with its connection closed; nothing is
// killed, and another lane's fast requests keep flowing meanwhile.
func TestDirectHungUpstream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var closed sync.WaitGroup
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			closed.Add(1)
			defer closed.Done()
			select {
			case <-r.Context().Done(): // the proxy closed the connection
			case <-release:
			}
		default:
			w.Write([]byte("ok\n"))
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	l := startLanesd(t, directConfig(up.URL, `
lane "default" {
  max_workers     = 1
  concurrency     = 2
  request_timeout = "1s"
}
lane "fast" {
  map = ["GET /ok"]
}
`))
	hung := make(chan result, 2)
	for range 2 {
		go func() { hung <- l.get("/hang") }()
	}
	waitFor(t, "both /hang requests in flight", 5*time.Second, func() bool {
		for _, ls := range l.status(t).Lanes {
			if ls.Name == "default" {
				return ls.Inflight == 2
			}
		}
		return false
	})
	var wg sync.WaitGroup
	oks := make([]result, 40)
	for i := range oks {
		wg.Go(func() { oks[i] = l.get("/ok") })
	}
	wg.Wait()
	for i, r := range oks {
		if r.err != nil || r.status != 200 || r.took > 500*time.Millisecond {
			t.Errorf("GET /ok #%d while the default lane hangs: %s", i, r)
		}
	}
	for range 2 {
		r := <-hung
		if r.err != nil || r.status != http.StatusGatewayTimeout || r.took < time.Second || r.took > 5*time.Second {
			t.Errorf("GET /hang: want 504 after request_timeout (1s), got %s", r)
		}
	}
	done := make(chan struct{})
	go func() { closed.Wait(); close(done) }()
	select {
	case <-done: // the upstream saw its connections closed
	case <-time.After(5 * time.Second):
		t.Error("the upstream's hung handlers never saw their connections closed")
	}
	for _, ls := range l.status(t).Lanes {
		if ls.Name == "default" && (ls.Timeouts != 2 || ls.Killed != 0 || ls.Inflight != 0) {
			t.Errorf("default lane after the timeouts: timeouts=%d killed=%d inflight=%d; want 2, 0, 0", ls.Timeouts, ls.Killed, ls.Inflight)
		}
	}
	l.mustGet(t, "/hang-not", 200) // the lane's slots are free again
}

// TestDirectQueueFull: past max_queue a direct lane answers 503 with
// Retry-After at once.
func TestDirectQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(up.Close)
	l := startLanesd(t, directConfig(up.URL, `
lane "default" {
  max_workers     = 1
  concurrency     = 1
  max_queue       = 1
  request_timeout = "10s"
}
`))
	res := make(chan result, 2)
	for range 2 {
		go func() { res <- l.get("/hang") }()
	}
	waitFor(t, "one in flight and one queued", 5*time.Second, func() bool {
		ls := l.lane(t, "default")
		return ls.Inflight == 1 && ls.Queued == 1
	})
	r := l.get("/third")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.took > time.Second {
		t.Errorf("third request past max_queue: want 503 + Retry-After at once, got %s (Retry-After %q)", r, r.header.Get("Retry-After"))
	}
	close(release)
	for range 2 {
		if r := <-res; r.status != 200 {
			t.Errorf("queued requests: %s", r)
		}
	}
}

// TestDirectNoCrossedAnswers (issue 15, HIGH 1, in direct mode): an
// upstream that sends more than its Content-Length leaves bytes on the
// connection that must never become the next request's answer.
func TestDirectNoCrossedAnswers(t *testing.T) {
	t.Parallel()
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
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					p := req.URL.Path
					if p == "/over" {
						// 5 announced, a forged answer after them.
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
						continue
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(p), p)
				}
			}()
		}
	}()
	l := startLanesd(t, directConfig("http://"+ln.Addr().String(), `
lane "default" {
  max_workers = 1
  concurrency = 1
}
`))
	for i := range 20 {
		if r := l.get("/over"); r.status != 200 || string(r.body) != "hello" {
			t.Fatalf("GET /over #%d: %s", i, r)
		}
		path := fmt.Sprintf("/own/%d", i)
		if r := l.get(path); r.status != 200 || string(r.body) != path {
			t.Fatalf("GET %s got another request's answer: %s", path, r)
		}
	}
}

// TestDirectPostNotSentTwice (issue 15, HIGH 2, in direct mode): a POST
// whose upstream resets mid-body reached the app, so it is not retried.
// An idempotent GET whose connection died unanswered is retried once.
func TestDirectPostNotSentTwice(t *testing.T) {
	t.Parallel()
	origin := newResetOrigin(t)
	l := startLanesd(t, directConfig("http://"+origin.addr, `
lane "default" {
  min_workers = 2
}
`))
	body := bytes.Repeat([]byte("x"), 4<<20)
	for i := range 4 {
		path := fmt.Sprintf("/upload/%d", i)
		r := do(l.client, http.MethodPost, l.URL(path), body, nil)
		if r.err == nil && r.status != http.StatusBadGateway {
			t.Errorf("POST %s: want 502 for an upstream that reset mid-body, got %v", path, r)
		}
		if n := origin.count("POST " + path); n != 1 {
			t.Errorf("POST %s reached the app %d times, want once", path, n)
		}
	}
	if r := l.get("/idem"); r.status != http.StatusBadGateway {
		t.Errorf("GET /idem: %s", r)
	}
	if n := origin.count("GET /idem"); n != 2 {
		t.Errorf("GET /idem reached the app %d times; want twice (one retry of an idempotent request)", n)
	}
}
