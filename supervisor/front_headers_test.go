package supervisor

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// exchange sends raw on a new connection to the front and returns the first
// response, its body, and the raw bytes that preceded the final response
// (a 100 Continue, say).
func exchange(t *testing.T, s *Supervisor, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", s.FrontAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// fields returns the values of the header lines named name (any case) in
// hello-worker's /hello/echo output.
func fields(echo, name string) []string {
	var out []string
	for _, line := range strings.Split(echo, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func startEcho(t *testing.T) *Supervisor {
	return start(t, `
front {
  max_body_size = "1MB"
}
lane "default" {
  min_workers = 2
  command = [CMD]
}`)
}

// Issue 7 item 6: the forwarding headers the worker gets are lanes' own.
func TestFrontForwardingHeaders(t *testing.T) {
	s := startEcho(t)
	t.Run("connection-named fields go before ours are added", func(t *testing.T) {
		resp, echo := exchange(t, s, "GET /hello/echo HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For, x-secret\r\n"+
			"X-Forwarded-For: 10.0.0.1\r\nX-Secret: s\r\nX-Kept: k\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, echo)
		}
		if got := fields(echo, "X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want just the client's address", got)
		}
		if got := fields(echo, "X-Secret"); len(got) != 0 {
			t.Errorf("a field the client's Connection named reached the worker: %q", got)
		}
		if got := fields(echo, "Connection"); len(got) != 0 {
			t.Errorf("the client's Connection reached the worker: %q", got)
		}
		if got := fields(echo, "X-Kept"); len(got) != 1 {
			t.Errorf("X-Kept = %q", got)
		}
	})
	t.Run("duplicate X-Forwarded-For joined", func(t *testing.T) {
		_, echo := exchange(t, s, "GET /hello/echo HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 10.0.0.1\r\n"+
			"X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nX-FORWARDED-FOR: 10.0.0.4\r\n\r\n")
		if got := fields(echo, "X-Forwarded-For"); len(got) != 1 || got[0] != "10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want one field, the client's address appended once", got)
		}
	})
	t.Run("X-Lanes-* fields are lanes'", func(t *testing.T) {
		_, echo := exchange(t, s, "GET /hello/echo HTTP/1.1\r\nHost: h\r\nX-Lanes-Filter-Us: 999999\r\n"+
			"x-lanes-theme: off\r\nX-LANES-Anything: 1\r\nX-Lanesque: kept\r\n\r\n")
		for _, name := range []string{"X-Lanes-Filter-Us", "X-Lanes-Theme", "X-Lanes-Anything"} {
			if got := fields(echo, name); len(got) != 0 {
				t.Errorf("the client's %s reached the worker: %q", name, got)
			}
		}
		if got := fields(echo, "X-Lanesque"); len(got) != 1 {
			t.Errorf("X-Lanesque = %q, want it kept", got)
		}
	})
	t.Run("proto and host are lanes'", func(t *testing.T) {
		_, echo := exchange(t, s, "GET /hello/echo HTTP/1.1\r\nHost: site.example\r\nX-Forwarded-Proto: https\r\n"+
			"x-forwarded-proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=1.2.3.4;proto=https\r\nKeep-Alive: 5\r\n\r\n")
		if got := fields(echo, "X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("X-Forwarded-Proto = %q, want lanes' own http", got)
		}
		if got := fields(echo, "X-Forwarded-Host"); len(got) != 1 || got[0] != "site.example" {
			t.Errorf("X-Forwarded-Host = %q, want the request's Host", got)
		}
		for _, name := range []string{"Forwarded", "Keep-Alive"} {
			if got := fields(echo, name); len(got) != 0 {
				t.Errorf("%s reached the worker: %q", name, got)
			}
		}
	})
}

// Issue 7 item 7: no header nobody sent, in either direction.
func TestFrontAddsNoHeaders(t *testing.T) {
	s := startEcho(t)
	_, echo := exchange(t, s, "POST /hello/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
	if got := fields(echo, "Content-Type"); len(got) != 0 {
		t.Errorf("request without a type reached the worker with Content-Type %q", got)
	}
	if !strings.Contains(echo, "body: 3\n") {
		t.Errorf("body lost: %q", echo)
	}
	resp, body := exchange(t, s, "GET /hello/notype HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "no type\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("response without a type reached the client with Content-Type %q", ct)
	}
}

// Issue 7 item 8: request targets, header names, trailers, Expect and
// Upgrade are settled at the front; none costs a worker.
func TestFrontRequestTargets(t *testing.T) {
	s := startEcho(t)
	check := func(raw string, want int) string {
		t.Helper()
		resp, body := exchange(t, s, raw)
		if resp.StatusCode != want {
			t.Errorf("%q: %d %q, want %d", raw, resp.StatusCode, body, want)
		}
		return body
	}
	echo := check("GET http://site.example/hello/echo?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200)
	if !strings.Contains(echo, "target: /hello/echo?q=1\n") || strings.Join(fields(echo, "Host"), ",") != "site.example" {
		t.Errorf("absolute-form target: worker got %q", echo)
	}
	check("GET https://x/hello/x HTTP/1.1\r\nHost: x\r\n\r\n", 200)
	echo = check("GET http://user:pw@site.example/hello/echo HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer mine\r\n\r\n", 400)
	if strings.Contains(echo, "Basic") {
		t.Errorf("userinfo became credentials: %q", echo)
	}
	check("GET hello/x HTTP/1.1\r\nHost: h\r\n\r\n", 400)
	check("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400)
	check("GET ftp://h/hello/x HTTP/1.1\r\nHost: h\r\n\r\n", 400)
	check("GET /hello/x HTTP/1.1\r\nHost: h\r\nX Bad: 1\r\n\r\n", 400)
	check("GET /hello/x HTTP/1.1\r\nHost: h\r\nX(Bad): 1\r\n\r\n", 400)

	// Trailers never become header fields.
	echo = check("POST /hello/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trail\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-Trail: t\r\nX-Unannounced: u\r\n\r\n", 200)
	if got := append(fields(echo, "X-Trail"), fields(echo, "X-Unannounced")...); len(got) != 0 || !strings.Contains(echo, "body: 3\n") {
		t.Errorf("trailer fields reached the worker as header fields: %q", echo)
	}

	// Upgrade: 501 from the front; h2c is declined by dropping it.
	check("GET /hello/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 501)
	echo = check("GET /hello/echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n", 200)
	if len(fields(echo, "Upgrade"))+len(fields(echo, "HTTP2-Settings")) != 0 {
		t.Errorf("h2c upgrade reached the worker: %q", echo)
	}

	// Not one of those put a worker out of rotation.
	st := laneStatus(s, "default")
	for _, w := range st.Workers {
		if w.State != "ready" {
			t.Errorf("worker %d is %s", w.PID, w.State)
		}
	}
	if st.Killed != 0 || st.Respawns != 0 {
		t.Errorf("killed %d respawns %d", st.Killed, st.Respawns)
	}
	for range 4 {
		if code, _, _ := get(t, s, "/hello/x"); code != 200 {
			t.Errorf("after: %d", code)
		}
	}
}

// Expect: 100-continue with a length over max_body_size gets 413 and no
// 100 Continue; a body announced over the limit without Expect is refused
// before it is read.
func TestFrontExpectTooLarge(t *testing.T) {
	s := startEcho(t)
	c, err := net.Dial("tcp", s.FrontAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /hello/echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("first line %q, want 413 (and no 100 Continue)", line)
	}
	resp, _ := exchange(t, s, "POST /hello/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2097152\r\n\r\n")
	if resp.StatusCode != 413 {
		t.Errorf("announced 2MB body: %d, want 413", resp.StatusCode)
	}
	// Within the limit, 100 Continue then the answer.
	resp, body := exchange(t, s, "POST /hello/echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
	if resp.StatusCode != 200 || !strings.Contains(body, "body: 3\n") {
		t.Errorf("3-byte body with Expect: %d %q", resp.StatusCode, body)
	}
}
