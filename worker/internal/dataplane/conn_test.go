package dataplane

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
)

// countingListener counts the writes on the connections it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// onlyReader hides every method but Read, as a proxied upstream body does.
type onlyReader struct{ io.Reader }

// serveCounting serves handler on a unix socket the way Serve does, and
// counts the writes on its connections other than held ones.
func serveCounting(t *testing.T, handler fasthttp.RequestHandler) (sock string, writes *atomic.Int64) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	writes = new(atomic.Int64)
	srv := NewServer(handler, hclog.NewNullLogger(), Limits{})
	go srv.Serve(Listener{countingListener{ln, writes}})
	t.Cleanup(func() { srv.Shutdown() })
	return sock, writes
}

// workerClient is the front's side of sock: one connection at a time.
func workerClient(sock string) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: sock, MaxConns: 1, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second,
		Dial: func(string) (net.Conn, error) { return net.Dial("unix", sock) }}
}

// A streamed response body leaves the worker in large writes: 1 MB in 4 KB
// writes (fasthttp's buffer) would be 256 of them.
func TestStreamedBodyLargeWrites(t *testing.T) {
	const size = 1 << 20
	sock, writes := serveCounting(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(onlyReader{strings.NewReader(strings.Repeat("x", size))}, size)
	})

	c := workerClient(sock)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://worker/big")
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Body()); n != size {
		t.Fatalf("body: %d bytes, want %d", n, size)
	}
	if n := writes.Load(); n > size/copyBuffer+4 {
		t.Errorf("%d writes for a %d-byte body; want at most %d (writes of %d bytes)", n, size, size/copyBuffer+4, copyBuffer)
	}
}

func (c countingConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// The answer to a request without a body leaves from inside the Read that
// waits for the next request, not from a Write of its own; every other
// answer (a body in the request, a streamed answer, Connection: close) is
// written as usual. Either way each answer arrives whole and at once.
func TestAnswerHeldUntilNextRead(t *testing.T) {
	sock, writes := serveCounting(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/stream":
			ctx.SetBodyStream(onlyReader{strings.NewReader("streamed")}, -1)
		case "/small-stream":
			ctx.SetBodyStream(onlyReader{strings.NewReader("small stream")}, len("small stream"))
		default:
			ctx.SetBodyString("answer to " + string(ctx.Method()) + " " + string(ctx.PostBody()))
		}
	})

	c := workerClient(sock)
	do := func(method, path, body string, close bool) string {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://worker" + path)
		if body != "" {
			req.SetBodyString(body)
		}
		req.SetConnectionClose()
		if !close {
			req.Header.ResetConnectionClose()
		}
		if err := c.Do(req, resp); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return string(resp.Body())
	}
	for i := 0; i < 3; i++ {
		if got := do("GET", "/", "", false); got != "answer to GET " {
			t.Fatalf("GET: %q", got)
		}
	}
	if got := do("GET", "/small-stream", "", false); got != "small stream" {
		t.Fatalf("small stream: %q", got)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("%d writes for four bodiless requests; want 0 (held, sent by the next Read)", n)
	}
	if got := do("POST", "/", "body", false); got != "answer to POST body" {
		t.Fatalf("POST: %q", got)
	}
	if got := do("GET", "/stream", "", false); got != "streamed" {
		t.Fatalf("stream: %q", got)
	}
	if got := do("GET", "/", "", true); got != "answer to GET " {
		t.Fatalf("GET with Connection: close: %q", got)
	}
	if got := do("GET", "/", "", false); got != "answer to GET " {
		t.Fatalf("GET on a new connection: %q", got)
	}
	if n := writes.Load(); n < 2 {
		t.Errorf("%d writes; want the POST's and the chunked stream's answers written at once", n)
	}
}

// A handler that rewrites the request's Content-Length while its body is
// still unread must not make the answer held: fasthttp then drains the body
// through the Read that would send it, and bytes already waiting there would
// never wake it (the worker hung, the front's hard timeout).
func TestHeldAnswerDecidedBeforeTheHandler(t *testing.T) {
	sock, _ := serveCounting(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(50 * time.Millisecond) // the client has written all it can
		ctx.Request.Header.SetContentLength(0)
		ctx.SetBodyString("ok")
	})
	c := workerClient(sock)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://worker/")
	req.SetBodyString(strings.Repeat("x", 250<<10))
	if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("POST, handler zeroing Content-Length: %v, status %d", err, resp.StatusCode())
	}
}

// fasthttp.TimeoutHandler leaves the handler running on ctx after it
// answers: holdAnswer must not read that ctx's response (-race).
func TestHeldAnswerAfterTimeoutHandler(t *testing.T) {
	sock, _ := serveCounting(t, fasthttp.TimeoutHandler(func(ctx *fasthttp.RequestCtx) {
		time.Sleep(50 * time.Millisecond)
		ctx.SetBodyString("late")
		ctx.Response.Header.SetContentLength(4)
	}, 10*time.Millisecond, "timeout"))
	c := workerClient(sock)
	for range 3 {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://worker/")
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusRequestTimeout {
			t.Fatalf("timed-out request: %v, status %d", err, resp.StatusCode())
		}
		time.Sleep(60 * time.Millisecond)
	}
}
