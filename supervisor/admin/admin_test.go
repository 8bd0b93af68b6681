package admin

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func serve(t *testing.T, token string) *fasthttp.Client {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := New(Options{Token: token, Status: func() any { return map[string]any{"lanes": []string{"default"}} }, Log: hclog.NewNullLogger()})
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { ln.Close() })
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}

func call(t *testing.T, c *fasthttp.Client, method, path, auth string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://admin" + path)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

func TestTokenRequiredOnEveryCall(t *testing.T) {
	c := serve(t, "s3cret")
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/api/status", "", 401},
		{"/api/status", "Bearer wrong", 401},
		{"/api/status", "Bearer s3cret-and-more", 401},
		{"/api/status", "s3cret", 401},
		{"/api/status", "Basic czNjcmV0", 401},
		{"/", "", 401},
		{"/nope", "", 401}, // no probing of what exists without the token
		{"/api/status", "Bearer s3cret", 200},
		{"/", "Bearer s3cret", 200},
	} {
		code, body, h := call(t, c, "GET", tc.path, tc.auth)
		if code != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.auth, code, tc.want)
		}
		if code == 401 {
			var e struct{ Error string }
			if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
				t.Errorf("401 body %q is not {\"error\": ...}", body)
			}
			if len(h.Peek("WWW-Authenticate")) == 0 {
				t.Error("401 without WWW-Authenticate")
			}
		}
	}
}

func TestErrorsAreJSON(t *testing.T) {
	c := serve(t, "")
	code, body, _ := call(t, c, "GET", "/api/nothing", "")
	if code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("unknown call: %d %q", code, body)
	}
	code, body, h := call(t, c, "POST", "/api/status", "")
	if code != 405 || !strings.Contains(body, `"error"`) || string(h.Peek("Allow")) != "GET" {
		t.Errorf("POST status: %d %q Allow=%q", code, body, h.Peek("Allow"))
	}
	code, body, h = call(t, c, "GET", "/api/status", "")
	if code != 200 || string(h.ContentType()) != "application/json" || !strings.Contains(body, `"default"`) {
		t.Errorf("status: %d %q %q", code, h.ContentType(), body)
	}
}

func TestDashboardEscapesToken(t *testing.T) {
	c := serve(t, `a"</script><b>`)
	code, body, _ := call(t, c, "GET", "/", `Bearer a"</script><b>`)
	if code != 200 || strings.Contains(body, `a"</script><b>`) {
		t.Errorf("dashboard: %d; token must be escaped in the page", code)
	}
}
