package app

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lanes-dev/lanes/shared/config"
)

// crashHelperEnv makes the test binary act as a worker that is asked for
// /demo/crash (see TestMain).
const crashHelperEnv = "LANES_APP_TEST_CRASH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) == "1" {
		crashHelper()
		return
	}
	os.Exit(m.Run())
}

// crashHelper requests /demo/crash in this process; it must not return.
func crashHelper() {
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info})
	a, err := New(config.App{Demo: true}, log)
	if err != nil {
		os.Exit(3)
	}
	var req fasthttp.Request
	req.SetRequestURI("http://demo/demo/crash")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	a.Handler(&ctx)
	os.Stdout.WriteString("answered\n")
	os.Exit(0)
}

// demoSite serves the demo site on an in-memory listener.
func demoSite(t *testing.T) (*App, *fasthttp.HostClient) {
	a, c, _ := demoSiteListener(t)
	return a, c
}

// demoSiteListener is demoSite that also returns the listener, for raw
// connections.
func demoSiteListener(t *testing.T) (*App, *fasthttp.HostClient, *fasthttputil.InmemoryListener) {
	t.Helper()
	a, err := New(config.App{Demo: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	s := &fasthttp.Server{Handler: a.Handler, Logger: quietLogger}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		a.Close() // releases /demo/hang
		ln.Close()
		<-done
	})
	return a, &fasthttp.HostClient{
		Addr:                      "demo",
		Dial:                      func(string) (net.Conn, error) { return ln.Dial() },
		MaxIdemponentCallAttempts: 1,
		StreamResponseBody:        true,
	}, ln
}

// demoDo sends method uri with body and returns status, headers and the
// whole body.
func demoDo(t *testing.T, c *fasthttp.HostClient, method, uri, body string) (int, *fasthttp.ResponseHeader, string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://demo" + uri)
	req.Header.SetMethod(method)
	if body != "" {
		req.SetBodyString(body)
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	var h fasthttp.ResponseHeader
	resp.Header.CopyTo(&h)
	var b []byte
	if s := resp.BodyStream(); s != nil {
		var err error
		if b, err = io.ReadAll(s); err != nil {
			t.Fatalf("%s %s: reading body: %v", method, uri, err)
		}
	}
	return resp.StatusCode(), &h, string(b)
}

// TestDemoLane: /demo/lane and /demo/lane/ANYTHING name the worker's lane,
// after ?ms=N if given.
func TestDemoLane(t *testing.T) {
	a, err := New(config.App{Demo: true}, testLogger(t), WithLane("slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for uri, want := range map[string]int{"/demo/lane": 200, "/demo/lane/report?ms=1": 200, "/demo/lane?ms=x": 400} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		a.Handler(&ctx)
		if got := ctx.Response.StatusCode(); got != want || want == 200 && string(ctx.Response.Body()) != "lane slow\n" {
			t.Errorf("GET %s: %d %q, want %d \"lane slow\"", uri, got, ctx.Response.Body(), want)
		}
	}
}

func TestDemoIndex(t *testing.T) {
	_, c := demoSite(t)
	status, h, body := demoDo(t, c, "GET", "/", "")
	if status != 200 || string(h.ContentType()) != "text/html; charset=utf-8" {
		t.Fatalf("got %d %q", status, h.ContentType())
	}
	for _, want := range []string{"<title>lanes demo</title>", `href="/demo/sleep?ms=`, `href="/demo/hang"`,
		`href="/demo/spin"`, `href="/demo/crash"`, `href="/demo/bytes?n=`, `href="/demo/echo"`} {
		if !strings.Contains(body, want) {
			t.Errorf("index lacks %q", want)
		}
	}
	if status, _, _ := demoDo(t, c, "POST", "/", "x"); status != 405 {
		t.Errorf("POST /: %d, want 405", status)
	}
}

func TestDemoSleep(t *testing.T) {
	_, c := demoSite(t)
	start := time.Now()
	status, _, body := demoDo(t, c, "GET", "/demo/sleep?ms=50", "")
	if status != 200 || body != "slept 50 ms\n" {
		t.Fatalf("got %d %q", status, body)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
	if status, _, body := demoDo(t, c, "GET", "/demo/sleep?ms=0", ""); status != 200 || body != "slept 0 ms\n" {
		t.Errorf("ms=0: %d %q", status, body)
	}
	// Any path below /demo/sleep/ sleeps too, so a config can map some
	// sleeps to a lane of their own.
	if status, _, body := demoDo(t, c, "GET", "/demo/sleep/slow/x?ms=1", ""); status != 200 || body != "slept 1 ms\n" {
		t.Errorf("/demo/sleep/slow/x: %d %q", status, body)
	}
	for _, q := range []string{"", "?ms=", "?ms=abc", "?ms=-1", "?ms=1.5", "?ms=-99999999999999999999"} {
		if status, _, _ := demoDo(t, c, "GET", "/demo/sleep"+q, ""); status != 400 {
			t.Errorf("/demo/sleep%s: %d, want 400", q, status)
		}
	}
}

func TestQueryIntCaps(t *testing.T) {
	for q, want := range map[string]int64{
		"ms=600001":               maxDemoMillis,
		"ms=99999999999999999999": maxDemoMillis,
		"ms=42":                   42,
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/demo/sleep?" + q)
		if got, ok := queryInt(&ctx, "ms", maxDemoMillis); !ok || got != want {
			t.Errorf("%s: got %d, %v; want %d", q, got, ok, want)
		}
	}
}

func TestDemoHang(t *testing.T) {
	a, c := demoSite(t)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://demo/demo/hang")
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.DoTimeout(req, resp, 300*time.Millisecond); err != fasthttp.ErrTimeout {
		t.Fatalf("got %v (status %d), want no answer", err, resp.StatusCode())
	}
	// Close (the worker going away) is the only thing that releases it.
	done := make(chan error, 1)
	go func() {
		r := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(r)
		done <- c.DoTimeout(req, r, 5*time.Second)
	}()
	time.Sleep(50 * time.Millisecond)
	a.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("hang not released by Close")
	}
}

func TestDemoSpin(t *testing.T) {
	_, c := demoSite(t)
	start := time.Now()
	status, _, body := demoDo(t, c, "GET", "/demo/spin?ms=50", "")
	if status != 200 || !strings.HasPrefix(body, "spun 50 ms") {
		t.Fatalf("got %d %q", status, body)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
	for _, q := range []string{"?ms=abc", "?ms=-5"} {
		if status, _, _ := demoDo(t, c, "GET", "/demo/spin"+q, ""); status != 400 {
			t.Errorf("/demo/spin%s: %d, want 400", q, status)
		}
	}
}

// TestDemoCrash runs /demo/crash in a child process: the process must exit
// with status 2, say why on stderr, and answer nothing.
func TestDemoCrash(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "demo crash requested") {
		t.Errorf("stderr lacks the log line: %q", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("handler returned: %q", stdout.String())
	}
}

func TestDemoBytes(t *testing.T) {
	_, c := demoSite(t)
	for _, n := range []int{0, 1, 63, 64, 65, 100_000, 1 << 20} {
		status, h, body := demoDo(t, c, "GET", "/demo/bytes?n="+itoa(n), "")
		if status != 200 || h.ContentLength() != n || len(body) != n {
			t.Fatalf("n=%d: got %d, Content-Length %d, %d bytes", n, status, h.ContentLength(), len(body))
		}
		if err := checkPattern([]byte(body), 0); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
	}
	for _, q := range []string{"", "?n=", "?n=x", "?n=-1"} {
		if status, _, _ := demoDo(t, c, "GET", "/demo/bytes"+q, ""); status != 400 {
			t.Errorf("/demo/bytes%s: %d, want 400", q, status)
		}
	}

	// Past the cap, N is the cap; read the header only.
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://demo/demo/bytes?n=99999999999999")
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.ContentLength(); got != maxDemoBytes {
		t.Errorf("capped Content-Length %d, want %d", got, maxDemoBytes)
	}
	resp.CloseBodyStream()
}

func TestDemoEcho(t *testing.T) {
	_, _, ln := demoSiteListener(t)
	conn, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := &rawConn{t: t, c: conn, br: bufio.NewReader(conn)}
	m := rc.roundTrip("POST /demo/echo?b=2&a=1 HTTP/1.1\r\n"+
		"Host: demo\r\n"+
		"X-Zed: last\r\n"+
		"x-alpha: first\r\n"+
		"Cookie: sid=\"a b\"; odd=x\\y\r\n"+
		"Content-Length: 10\r\n"+
		"\r\n"+
		"hello body", false)
	got := string(m.body)
	if m.status() != 200 {
		t.Fatalf("got %q", m.start)
	}
	for _, want := range []string{"method: POST\n", "uri: /demo/echo?b=2&a=1\n", "  Host: demo\n",
		"  Content-Length: 10\n", "  Cookie: sid=\"a b\"; odd=x\\y\n", "body: 10 bytes\nhello body"} {
		if !strings.Contains(got, want) {
			t.Errorf("echo lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "X-Alpha") > strings.Index(got, "X-Zed") ||
		strings.Index(got, "Content-Length") > strings.Index(got, "Host") {
		t.Errorf("headers not sorted:\n%s", got)
	}
	if strings.Contains(got, "Content-Type") {
		t.Errorf("echo shows a Content-Type the client did not send:\n%s", got)
	}
}

func TestDemoNotFound(t *testing.T) {
	_, c := demoSite(t)
	for _, uri := range []string{"/nope", "/demo", "/demo/", "/demo/nope", "/demo/sleepy", "/demo/hang/x"} {
		if status, _, _ := demoDo(t, c, "GET", uri, ""); status != 404 {
			t.Errorf("%s: %d, want 404", uri, status)
		}
	}
}

func itoa(n int) string { return string(fasthttp.AppendUint(nil, n)) }
