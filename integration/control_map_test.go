package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

const mapConfig = `
debug_headers = true
app {
  demo = true
}
lane "default" {
  min_workers = 1
}
lane "static" {
  min_workers = 1
  map         = ["GET /demo/sleep/*"]
}
lane "rt" {
  min_workers = 1
}
lane "gone" {
  min_workers = 1
}
`

// laneOf GETs path and returns the lane that answered it (X-Lane).
func (l *lanesd) laneOf(t *testing.T, path string) string {
	t.Helper()
	r := l.get(path)
	if r.err != nil || r.status != 200 {
		t.Fatalf("GET %s: want 200, got %s", path, r)
	}
	return r.header.Get("X-Lane")
}

func (l *lanesd) wantLane(t *testing.T, path, lane string) {
	t.Helper()
	if got := l.laneOf(t, path); got != lane {
		t.Errorf("GET %s went to lane %q, want %q", path, got, lane)
	}
}

// TestControlMapAPI: POST /api/map sends requests to the lane at once,
// GET /api/map shows the mapping with its statistics, a runtime mapping
// wins over a static one of the same pattern, and DELETE restores what was
// there before.
func TestControlMapAPI(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, mapConfig)
	l.wantLane(t, "/demo/echo", "default")
	l.wantLane(t, "/demo/sleep/a?ms=1", "static")

	before := time.Now().Add(-time.Second)
	if m, err := l.API.Map(context.Background(), api.MapRequest{Lane: "rt", Method: "GET", Pattern: "/demo/echo"}); err != nil {
		t.Fatalf("POST /api/map: %v", err)
	} else if m.Lane != "rt" {
		t.Errorf("POST /api/map answer does not name the lane: %+v", m)
	}
	if m, ok := findMapping(l.mappings(t), "GET", "/demo/echo"); !ok || m.Hits != 0 || m.LastHit != nil {
		t.Errorf("a mapping never hit: %+v (found %v); want hits 0, last_hit null", m, ok)
	}
	l.wantLane(t, "/demo/echo", "rt")
	l.wantLane(t, "/demo/echo?x=1", "rt") // the query is not part of the path

	m, ok := findMapping(l.mappings(t), "GET", "/demo/echo")
	if !ok {
		t.Fatalf("GET /api/map has no GET /demo/echo: %v", mappingKeys(l.mappings(t)))
	}
	if m.Lane != "rt" || !m.Dynamic || m.Source != "api" {
		t.Errorf("mapping %+v: want lane rt, dynamic, source api", m)
	}
	if m.Added.Before(before) || m.Added.After(time.Now().Add(time.Second)) {
		t.Errorf("mapping added %v, want about now", m.Added)
	}
	if m.Hits != 2 || m.LastHit == nil || m.LastHit.Before(m.Added) {
		t.Errorf("mapping after 2 requests: hits %d, last_hit %v (added %v)", m.Hits, m.LastHit, m.Added)
	}
	for range 3 {
		l.wantLane(t, "/demo/echo", "rt")
	}
	m2, _ := findMapping(l.mappings(t), "GET", "/demo/echo")
	if m2.Hits != m.Hits+3 || m2.LastHit == nil || m2.LastHit.Before(*m.LastHit) {
		t.Errorf("after 3 more requests: hits %d (was %d), last_hit %v (was %v)", m2.Hits, m.Hits, m2.LastHit, m.LastHit)
	}
	// The static mappings are listed too, not dynamic.
	if s, ok := findMapping(l.mappings(t), "GET", "/demo/sleep/*"); !ok || s.Dynamic || s.Source != "config" || s.Lane != "static" {
		t.Errorf("static mapping GET /demo/sleep/*: %+v (found %v)", s, ok)
	}

	// A runtime mapping of a static mapping's pattern wins over it; removing
	// it gives the static one its requests back.
	l.mapTo(t, "rt", "GET", "/demo/sleep/*")
	l.wantLane(t, "/demo/sleep/a?ms=1", "rt")
	l.unmap(t, "GET", "/demo/sleep/*")
	l.wantLane(t, "/demo/sleep/a?ms=1", "static")

	l.unmap(t, "GET", "/demo/echo")
	l.wantLane(t, "/demo/echo", "default")
	if _, ok := findMapping(l.mappings(t), "GET", "/demo/echo"); ok {
		t.Errorf("GET /demo/echo still listed after DELETE")
	}

	// "*" as method matches any; a glob pattern maps a whole subtree.
	l.mapTo(t, "gone", "*", "/demo/ec*")
	if r := do(l.client, http.MethodPost, l.URL("/demo/echo"), []byte("x"), nil); r.err != nil || r.header.Get("X-Lane") != "gone" {
		t.Errorf("POST /demo/echo with \"* /demo/ec*\" mapped to lane gone: %s, lane %q", r, r.header.Get("X-Lane"))
	}
	l.wantLane(t, "/demo/echo", "gone")
}

// TestControlMapErrors: every refused mapping call answers a 4xx with
// {"error": ...} and leaves the mappings and the routing as they were;
// lanectl prints the server's error and exits non-zero.
func TestControlMapErrors(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, mapConfig)
	l.mapTo(t, "rt", "GET", "/demo/echo")
	want := mappingKeys(l.mappings(t))

	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int // 0: any 4xx
	}{
		{"unknown lane", "POST", "/api/map", `{"lane":"nope","method":"GET","pattern":"/x"}`, 404},
		{"path without /", "POST", "/api/map", `{"lane":"rt","method":"GET","pattern":"x"}`, 400},
		{"lowercase method", "POST", "/api/map", `{"lane":"rt","method":"get","pattern":"/x"}`, 400},
		{"query in pattern", "POST", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x?a=1"}`, 400},
		{"blank in pattern", "POST", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x /y"}`, 400},
		{"missing pattern", "POST", "/api/map", `{"lane":"rt","method":"GET"}`, 400},
		{"missing lane", "POST", "/api/map", `{"method":"GET","pattern":"/x"}`, 400},
		{"not JSON", "POST", "/api/map", `{lane: rt`, 400},
		{"JSON array", "POST", "/api/map", `["rt","GET","/x"]`, 400},
		{"unknown field", "POST", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x","extra":1}`, 400},
		{"trailing data", "POST", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x"} {}`, 400},
		{"empty body", "POST", "/api/map", ``, 400},
		{"number as lane", "POST", "/api/map", `{"lane":5,"method":"GET","pattern":"/x"}`, 400},
		{"remove missing", "DELETE", "/api/map", `{"method":"GET","pattern":"/not/mapped"}`, 404},
		{"remove static", "DELETE", "/api/map", `{"method":"GET","pattern":"/demo/sleep/*"}`, 409},
		{"remove malformed", "DELETE", "/api/map", `{"method":"GET","pattern":"nope"}`, 400},
		{"remove not JSON", "DELETE", "/api/map", `nope`, 400},
		{"remove without body", "DELETE", "/api/map", nil, 400},
		{"wrong method PUT", "PUT", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x"}`, 405},
		{"wrong method PATCH", "PATCH", "/api/map", `{"lane":"rt","method":"GET","pattern":"/x"}`, 405},
	} {
		r := l.adminCall(tc.method, tc.path, tc.body)
		checkErrorBody(t, tc.name, r)
		if tc.code != 0 && r.status != tc.code {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.code, r.body)
		}
		if got := mappingKeys(l.mappings(t)); !slices.Equal(got, want) {
			t.Fatalf("%s changed the mappings:\n got %v\nwant %v", tc.name, got, want)
		}
	}
	l.wantLane(t, "/demo/echo", "rt")
	l.wantLane(t, "/demo/sleep/a?ms=1", "static")
}

// TestControlMapLanectl: lanectl mapped, map and unmap do what the API
// does; a refusal is printed with the server's message and exit status 1.
func TestControlMapLanectl(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, mapConfig)
	code, out := l.lanectl(t, "map", "rt", "GET /demo/echo")
	if code != 0 || !strings.Contains(out, "/demo/echo") || !strings.Contains(out, "rt") {
		t.Fatalf("lanectl map: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/echo", "rt")
	code, out = l.lanectl(t, "mapped")
	if code != 0 {
		t.Fatalf("lanectl mapped: exit %d:\n%s", code, out)
	}
	for _, s := range []string{"/demo/echo", "rt", "/demo/sleep/*", "static"} {
		if !strings.Contains(out, s) {
			t.Errorf("lanectl mapped does not show %q:\n%s", s, out)
		}
	}
	// Runtime over static, through lanectl too.
	if code, out := l.lanectl(t, "map", "rt", "GET /demo/sleep/*"); code != 0 {
		t.Fatalf("lanectl map over a static pattern: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/sleep/z?ms=1", "rt")
	if code, out := l.lanectl(t, "unmap", "GET /demo/sleep/*"); code != 0 {
		t.Fatalf("lanectl unmap: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/sleep/z?ms=1", "static")

	want := mappingKeys(l.mappings(t))
	for _, tc := range []struct {
		args []string
		says string // part of the server's message
	}{
		{[]string{"map", "nope", "GET /x"}, `no lane "nope"`},
		{[]string{"map", "rt", "GET x"}, "must start with"},
		{[]string{"unmap", "GET /not/mapped"}, "no mapping"},
		{[]string{"unmap", "GET /demo/sleep/*"}, "static"},
	} {
		code, out := l.lanectl(t, tc.args...)
		if code == 0 {
			t.Errorf("lanectl %q: exit 0, want non-zero:\n%s", tc.args, out)
		}
		if !strings.Contains(out, tc.says) {
			t.Errorf("lanectl %q does not print the server's error (%q):\n%s", tc.args, tc.says, out)
		}
		if got := mappingKeys(l.mappings(t)); !slices.Equal(got, want) {
			t.Fatalf("lanectl %q changed the mappings:\n got %v\nwant %v", tc.args, got, want)
		}
	}

	if code, out := l.lanectl(t, "unmap", "GET /demo/echo"); code != 0 || !strings.Contains(out, "/demo/echo") {
		t.Fatalf("lanectl unmap: exit %d:\n%s", code, out)
	}
	l.wantLane(t, "/demo/echo", "default")
}

// TestControlMapSurvivesReload: runtime mappings survive a SIGHUP reload;
// those of a lane the reload removed are dropped, and the log says so.
func TestControlMapSurvivesReload(t *testing.T) {
	t.Parallel()
	l := startLanesd(t, mapConfig)
	l.mapTo(t, "rt", "GET", "/demo/echo")
	l.mapTo(t, "gone", "GET", "/demo/sleep")
	l.wantLane(t, "/demo/sleep?ms=1", "gone")

	l.writeConfig(t, strings.Replace(mapConfig, `lane "gone" {`, `lane "other" {`, 1))
	l.signal(t, syscall.SIGHUP)
	l.waitLog(t, 15*time.Second, "reloaded")
	waitFor(t, "the new lane to be in status", 10*time.Second, func() bool {
		for _, ls := range l.status(t).Lanes {
			if ls.Name == "other" {
				return true
			}
		}
		return false
	})
	ms := l.mappings(t)
	if m, ok := findMapping(ms, "GET", "/demo/echo"); !ok || m.Lane != "rt" || m.Source != "api" {
		t.Errorf("runtime mapping GET /demo/echo after reload: %+v (found %v); want it kept, lane rt", m, ok)
	}
	if m, ok := findMapping(ms, "GET", "/demo/sleep"); ok {
		t.Errorf("runtime mapping of the removed lane still listed after reload: %+v", m)
	}
	if !strings.Contains(l.Log.String(), "dropped runtime mapping GET /demo/sleep") {
		t.Errorf("the log does not say the runtime mapping of lane gone was dropped")
	}
	l.wantLane(t, "/demo/echo", "rt")
	l.wantLane(t, "/demo/sleep?ms=1", "default")
	l.wantLane(t, "/demo/sleep/a?ms=1", "static")
}
