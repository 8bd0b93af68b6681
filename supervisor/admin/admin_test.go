package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/api"
)

const testToken = "s3cret-token-value"

func newServer(t *testing.T, token string) (*Server, *fakeBackend) {
	t.Helper()
	f := newFake()
	return New(Options{Token: token, Listen: "127.0.0.1:8081", Backend: f, Log: hclog.NewNullLogger()}), f
}

// do runs one request through the handler in memory; hdr are name, value
// pairs. Host defaults to the listen address.
func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://127.0.0.1:8081"+path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorBody decodes an error answer, failing unless it is JSON with a
// non-empty "error".
func errorBody(t *testing.T, rec *httptest.ResponseRecorder) api.ErrorBody {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer Content-Type %q, want application/json; body %s", ct, rec.Body)
	}
	var e api.ErrorBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" {
		t.Fatalf("error answer is not {\"error\": ...}: %v, %q", err, rec.Body)
	}
	return e
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path, body string
		code               int
		want               string // in the body
		call               string // the backend call, "" for none
	}{
		{"GET", "/api/status", "", 200, `"name": "default"`, "status"},
		{"HEAD", "/api/status", "", 200, "", "status"},
		{"GET", "/api/map", "", 200, `"pattern": "/static/*"`, "mappings"},
		{"POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/report"}`, 200, `"source": "api"`, "map slow GET /report"},
		{"DELETE", "/api/map", `{"method":"GET","pattern":"/static/*"}`, 200, `"removed": true`, "unmap GET /static/*"},
		{"POST", "/api/lanes/slow/resize", `{"min_workers":3,"max_workers":6}`, 200, `"max_workers": 6`, "resize slow 3 6"},
		{"POST", "/api/lanes/slow/resize", `{"max_workers":9}`, 200, `"min_workers": 2`, "resize slow 2 9"},
		{"POST", "/api/lanes/default/drain", "", 200, `"started": true`, "drain default"},
		{"POST", "/api/reload", "", 200, `resized 2..4 -> 3..6`, "reload"},
		{"GET", "/api/requests", "", 200, `"timeout_in": 28.5`, "requests"},
		{"GET", "/api/events", "", 200, `"kind": "kill"`, "events 0"},
		{"GET", "/api/events?since=1", "", 200, `"kind": "learned"`, "events 1"},
		{"GET", "/api/events?since=2", "", 200, `[]`, "events 2"},
		{"GET", "/api/samples", "", 200, `"lane": "slowlane"`, "samples  0"},
		{"GET", "/api/samples?lane=default&since=7", "", 200, `"queue_wait_p99_ms": 3`, "samples default 7"},
		{"GET", "/api/samples?lane=nope", "", 404, `no lane \"nope\"`, "samples nope 0"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			s, f := newServer(t, "")
			rec := do(t, s.Handler(), tt.method, tt.path, tt.body, "Content-Type", "application/json")
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.want) {
				t.Fatalf("got %d %s, want %d with %q", rec.Code, rec.Body, tt.code, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if calls := f.Calls(); len(calls) != 1 || calls[0] != tt.call {
				t.Errorf("backend calls %q, want [%q]", calls, tt.call)
			}
		})
	}
}

func TestEventsBadSince(t *testing.T) {
	for _, path := range []string{"/api/events?since=-1", "/api/samples?since=x", "/api/samples?lane=default&since=1.5"} {
		s, f := newServer(t, "")
		rec := do(t, s.Handler(), "GET", path, "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(errorBody(t, rec).Error, "since") {
			t.Fatalf("GET %s: got %d %s, want 400 naming since", path, rec.Code, rec.Body)
		}
		if calls := f.Calls(); len(calls) != 0 {
			t.Errorf("GET %s: a refused call reached the backend: %q", path, calls)
		}
	}
}

func TestEmptyMappingsIsAList(t *testing.T) {
	s, f := newServer(t, "")
	f.maps = nil
	if rec := do(t, s.Handler(), "GET", "/api/map", ""); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("GET /api/map with no mappings = %q, want []", rec.Body)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	tests := []struct{ method, path, allow string }{
		{"POST", "/api/status", "GET, HEAD"},
		{"DELETE", "/api/status", "GET, HEAD"},
		{"PUT", "/api/map", "DELETE, GET, HEAD, POST"},
		{"GET", "/api/lanes/slow/resize", "POST"},
		{"GET", "/api/lanes/slow/drain", "POST"},
		{"GET", "/api/reload", "POST"},
		{"POST", "/metrics", "GET, HEAD"},
		{"POST", "/", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			s, f := newServer(t, "")
			rec := do(t, s.Handler(), tt.method, tt.path, "{}")
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("got %d %s, want 405", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if e := errorBody(t, rec); !strings.Contains(e.Error, tt.allow) {
				t.Errorf("error %q does not say what is allowed", e.Error)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("backend called: %q", f.Calls())
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	for _, path := range []string{"/nope", "/api", "/api/lanes/slow", "/api/lanes/slow/explode", "/index.html", "/metrics"} {
		s, _ := newServer(t, "")
		rec := do(t, s.Handler(), "GET", path, "")
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, rec.Code, rec.Body)
			continue
		}
		errorBody(t, rec)
	}
}

func TestBadBodiesNeverReachTheBackend(t *testing.T) {
	big := `{"lane":"slow","method":"GET","pattern":"/` + strings.Repeat("a", 70<<10) + `"}`
	tests := []struct{ name, method, path, body, want string }{
		{"empty map", "POST", "/api/map", "", "body required"},
		{"malformed", "POST", "/api/map", `{"lane":"slow",`, "invalid JSON"},
		{"not an object", "POST", "/api/map", `["slow"]`, "invalid JSON"},
		{"unknown field", "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/x","dynamic":true}`, `unknown field "dynamic"`},
		{"trailing data", "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/x"} {}`, "data after"},
		{"trailing garbage", "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/x"}x`, "invalid JSON"},
		{"oversized", "POST", "/api/map", big, "larger than 64 KiB"},
		{"missing lane", "POST", "/api/map", `{"method":"GET","pattern":"/x"}`, "lane"},
		{"missing method and pattern", "POST", "/api/map", `{"lane":"slow"}`, "method, pattern"},
		{"blank pattern", "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"  "}`, "pattern"},
		{"wrong type", "POST", "/api/map", `{"lane":1,"method":"GET","pattern":"/x"}`, "invalid JSON"},
		{"unmap empty", "DELETE", "/api/map", "", "body required"},
		{"unmap missing pattern", "DELETE", "/api/map", `{"method":"GET"}`, "pattern"},
		{"unmap unknown field", "DELETE", "/api/map", `{"method":"GET","pattern":"/x","lane":"slow"}`, "unknown field"},
		{"resize empty object", "POST", "/api/lanes/slow/resize", `{}`, "min_workers, max_workers or both"},
		{"resize no body", "POST", "/api/lanes/slow/resize", ``, "body required"},
		{"resize negative", "POST", "/api/lanes/slow/resize", `{"min_workers":-1}`, "negative"},
		{"resize min above max", "POST", "/api/lanes/slow/resize", `{"min_workers":5,"max_workers":2}`, "above"},
		{"resize string", "POST", "/api/lanes/slow/resize", `{"min_workers":"3"}`, "invalid JSON"},
		{"resize float", "POST", "/api/lanes/slow/resize", `{"min_workers":1.5}`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := newServer(t, "")
			rec := do(t, s.Handler(), tt.method, tt.path, tt.body, "Content-Type", "application/json")
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("got %d %s, want 400", rec.Code, rec.Body)
			}
			if e := errorBody(t, rec); !strings.Contains(e.Error, tt.want) {
				t.Errorf("error %q, want it to mention %q", e.Error, tt.want)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("backend called for a bad body: %q", f.Calls())
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	s, f := newServer(t, "")
	h := s.Handler()

	rec := do(t, h, "POST", "/api/lanes/nosuch/drain", "")
	if rec.Code != 404 || errorBody(t, rec).Error != `no lane "nosuch"` {
		t.Errorf("drain unknown lane: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "POST", "/api/lanes/nosuch/resize", `{"min_workers":1}`)
	if rec.Code != 404 {
		t.Errorf("resize unknown lane: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "POST", "/api/lanes/slow/resize", `{"min_workers":10}`)
	if rec.Code != 400 || !strings.Contains(errorBody(t, rec).Error, "min_workers 10 > max_workers 8") {
		t.Errorf("backend refusal: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "DELETE", "/api/map", `{"method":"GET","pattern":"/never"}`)
	if rec.Code != 404 {
		t.Errorf("unmap unknown: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/boom"}`)
	if rec.Code != 500 || errorBody(t, rec).Error != "router exploded" {
		t.Errorf("plain error: %d %s, want 500", rec.Code, rec.Body)
	}
	rec = do(t, h, "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/panic"}`)
	if rec.Code != 500 || errorBody(t, rec).Error != "internal error" {
		t.Errorf("panic: %d %s, want 500 JSON", rec.Code, rec.Body)
	}

	f.reloadErr = refusedReload
	rec = do(t, h, "POST", "/api/reload", "")
	e := errorBody(t, rec)
	if rec.Code != 422 || e.Error != refusedReload.Msg || len(e.Diagnostics) != 1 || !strings.HasPrefix(e.Diagnostics[0], "configs/example.hcl:3,1: ") {
		t.Errorf("refused reload: %d %s", rec.Code, rec.Body)
	}
}

func TestToken(t *testing.T) {
	s, f := newServer(t, testToken)
	h := s.Handler()
	refused := []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken + "x", "Basic " + testToken, testToken, "Bearer" + testToken}
	for _, auth := range refused {
		rec := do(t, h, "GET", "/api/status", "", "Authorization", auth)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, rec.Code)
			continue
		}
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("Authorization %q: WWW-Authenticate %q", auth, got)
		}
		errorBody(t, rec)
	}
	// Every API call, the metrics and unknown paths need it too.
	for _, c := range [][2]string{{"POST", "/api/reload"}, {"POST", "/api/lanes/slow/drain"}, {"GET", "/api/map"}, {"GET", "/api/samples"}, {"GET", "/metrics"}, {"GET", "/debug/pprof/heap"}, {"GET", "/nope"}, {"POST", "/"}} {
		if rec := do(t, h, c[0], c[1], ""); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without token: %d, want 401", c[0], c[1], rec.Code)
		}
	}
	if len(f.Calls()) != 0 {
		t.Fatalf("backend called without a token: %q", f.Calls())
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER " + testToken, "BeArEr   " + testToken + " "} {
		if rec := do(t, h, "GET", "/api/status", "", "Authorization", auth); rec.Code != 200 {
			t.Errorf("Authorization %q: %d %s, want 200", auth, rec.Code, rec.Body)
		}
	}
	// The dashboard shell needs no token.
	if rec := do(t, h, "GET", "/", ""); rec.Code != 200 {
		t.Errorf("dashboard shell without token: %d", rec.Code)
	}
}

// lanesd's own Go profiles are served with the token: the goroutine dump
// an operator takes to explain a front that grows.
func TestPprof(t *testing.T) {
	s, _ := newServer(t, testToken)
	rec := do(t, s.Handler(), "GET", "/debug/pprof/goroutine?debug=1", "", "Authorization", "Bearer "+testToken)
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "goroutine profile: total ") {
		t.Fatalf("GET /debug/pprof/goroutine?debug=1: %d %.200q", rec.Code, rec.Body)
	}
	if rec := do(t, s.Handler(), "POST", "/debug/pprof/heap", "", "Authorization", "Bearer "+testToken); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /debug/pprof/heap: %d, want 405", rec.Code)
	}
}

func TestHostCheckWithoutToken(t *testing.T) {
	s, f := newServer(t, "")
	s.o.Listen = "10.1.2.3:8081"
	h := s.Handler()
	for _, host := range []string{"evil.example", "evil.example:8081", "127.0.0.1.evil.example", "localhost.evil.example:8081", "10.1.2.4:8081", ""} {
		for _, path := range []string{"/api/status", "/"} {
			rec := do(t, h, "GET", path, "", "Host", host)
			if rec.Code != http.StatusForbidden {
				t.Errorf("Host %q %s: %d, want 403", host, path, rec.Code)
				continue
			}
			errorBody(t, rec)
		}
	}
	if len(f.Calls()) != 0 {
		t.Fatalf("backend called for a foreign Host: %q", f.Calls())
	}
	for _, host := range []string{"127.0.0.1:8081", "127.0.0.1:1234", "127.0.0.1", "localhost:9", "LOCALHOST:8081", "localhost.", "[::1]:8081", "[::1]", "10.1.2.3:8081", "10.1.2.3:9999"} {
		if rec := do(t, h, "GET", "/api/status", "", "Host", host); rec.Code != 200 {
			t.Errorf("Host %q: %d %s, want 200", host, rec.Code, rec.Body)
		}
	}
	// With a token, the token is the defence: any Host.
	s2, _ := newServer(t, testToken)
	if rec := do(t, s2.Handler(), "GET", "/api/status", "", "Host", "admin.example.com", "Authorization", "Bearer "+testToken); rec.Code != 200 {
		t.Errorf("token and a foreign Host: %d, want 200", rec.Code)
	}
}

func TestCrossOriginWritesRefused(t *testing.T) {
	s, f := newServer(t, "")
	h := s.Handler()
	rec := do(t, h, "POST", "/api/reload", "", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", rec.Code)
	}
	errorBody(t, rec)
	rec = do(t, h, "POST", "/api/map", `{"lane":"slow","method":"GET","pattern":"/x"}`, "Origin", "http://evil.example")
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %d, want 403", rec.Code)
	}
	if len(f.Calls()) != 0 {
		t.Fatalf("backend called cross-origin: %q", f.Calls())
	}
	// The dashboard's own calls are same-origin.
	if rec := do(t, h, "POST", "/api/reload", "", "Origin", "http://127.0.0.1:8081", "Sec-Fetch-Site", "same-origin"); rec.Code != 200 {
		t.Fatalf("same-origin POST: %d", rec.Code)
	}
}

func TestDashboardShellHoldsNoDataAndNoSecret(t *testing.T) {
	s, f := newServer(t, testToken)
	rec := do(t, s.Handler(), "GET", "/", "")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("dashboard: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, leak := range []string{testToken, "4242", "slowlane", "/static/*", "configs/example.hcl"} {
		if strings.Contains(body, leak) {
			t.Errorf("dashboard shell contains %q", leak)
		}
	}
	if len(f.Calls()) != 0 {
		t.Errorf("serving the shell called the backend: %q", f.Calls())
	}
	for _, external := range []string{"src=\"http", "href=\"http", "@import", "<script src"} {
		if strings.Contains(body, external) {
			t.Errorf("dashboard loads an external asset (%q)", external)
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", rec.Header().Get("Cache-Control"))
	}
	if !strings.Contains(body, "sessionStorage") || strings.Contains(body, ".innerHTML") {
		t.Errorf("dashboard script should keep the token in sessionStorage and never set innerHTML")
	}
}

func TestMetrics(t *testing.T) {
	s, _ := newServer(t, testToken)
	s.o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "lanes_up 1\n")
	})
	rec := do(t, s.Handler(), "GET", "/metrics", "", "Authorization", "Bearer "+testToken)
	if rec.Code != 200 || rec.Body.String() != "lanes_up 1\n" {
		t.Fatalf("metrics: %d %q", rec.Code, rec.Body)
	}
}

func TestWarnExposed(t *testing.T) {
	tests := []struct {
		listen, token string
		want          bool
	}{
		{"127.0.0.1:8081", "", false},
		{"localhost:8081", "", false},
		{"[::1]:8081", "", false},
		{"127.0.0.2:8081", "", false},
		{":8081", "", true},
		{"0.0.0.0:8081", "", true},
		{"[::]:8081", "", true},
		{"10.0.0.5:8081", "", true},
		{"admin.example.com:8081", "", true},
		{"0.0.0.0:8081", "tok", false},
		{":8081", "tok", false},
	}
	for _, tt := range tests {
		if got := WarnExposed(tt.listen, tt.token); got != tt.want {
			t.Errorf("WarnExposed(%q, %q) = %v, want %v", tt.listen, tt.token, got, tt.want)
		}
	}
}

// TestServeAndShutdown runs the real server on a loopback listener.
func TestServeAndShutdown(t *testing.T) {
	s, _ := newServer(t, testToken)
	if s.srv.ReadHeaderTimeout == 0 || s.srv.ReadTimeout == 0 || s.srv.WriteTimeout == 0 || s.srv.IdleTimeout == 0 || s.srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("server limits not set: %+v", s.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()

	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/status", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.PID != 4242 {
		t.Fatalf("status over TCP: %v %+v", err, st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}
