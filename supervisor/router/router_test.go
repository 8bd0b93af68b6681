package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// Lane numbers used by the tests; the default lane is 0.
const (
	laneDefault = iota
	laneFast
	laneSlow
	laneStatic
	laneAPI
	laneImg
	laneOther
)

func TestMatch(t *testing.T) {
	type req struct {
		method, path string
		lane         int
	}
	tests := []struct {
		name   string
		routes []Route
		reqs   []req
	}{
		{
			name: "exact beats glob",
			routes: []Route{
				{Method: "GET", Path: "/report/*", Lane: laneSlow},
				{Method: "GET", Path: "/report/daily", Lane: laneFast},
			},
			reqs: []req{
				{"GET", "/report/daily", laneFast},
				{"GET", "/report/weekly", laneSlow},
				{"GET", "/report/daily/x", laneSlow},
			},
		},
		{
			name: "exact with any method beats glob with specific method",
			routes: []Route{
				{Method: "GET", Path: "/x*", Lane: laneSlow},
				{Method: "*", Path: "/x", Lane: laneFast},
			},
			reqs: []req{{"GET", "/x", laneFast}, {"GET", "/xy", laneSlow}},
		},
		{
			name: "GET /static/* beats * /*",
			routes: []Route{
				{Method: "*", Path: "/*", Lane: laneOther},
				{Method: "GET", Path: "/static/*", Lane: laneStatic},
			},
			reqs: []req{
				{"GET", "/static/app.css", laneStatic},
				{"POST", "/static/app.css", laneOther},
				{"GET", "/index.html", laneOther},
				{"GET", "/", laneOther},
			},
		},
		{
			name: "longer literal prefix wins",
			routes: []Route{
				{Method: "GET", Path: "/static/*", Lane: laneStatic},
				{Method: "GET", Path: "/static/img/*", Lane: laneImg},
			},
			reqs: []req{
				{"GET", "/static/img/a.png", laneImg},
				{"GET", "/static/img/", laneImg},
				{"GET", "/static/imgs", laneStatic},
				{"GET", "/static/", laneStatic},
				{"GET", "/static", laneDefault},
			},
		},
		{
			name: "longer prefix wins over more literals",
			routes: []Route{
				{Method: "GET", Path: "/a*/very/long/suffix", Lane: laneSlow},
				{Method: "GET", Path: "/ab*", Lane: laneFast},
			},
			reqs: []req{{"GET", "/abc/very/long/suffix", laneFast}},
		},
		{
			name: "same prefix: more literals wins",
			routes: []Route{
				{Method: "GET", Path: "/user/*", Lane: laneOther},
				{Method: "GET", Path: "/user/*/edit", Lane: laneSlow},
			},
			reqs: []req{
				{"GET", "/user/42/edit", laneSlow},
				{"GET", "/user/42/view", laneOther},
				{"GET", "/user/a/b/edit", laneSlow}, // "*" spans "/"
				{"GET", "/user//edit", laneSlow},    // and may be empty
				{"GET", "/user/42/edit/", laneOther},
			},
		},
		{
			name: "specific method beats any method, exact",
			routes: []Route{
				{Method: "*", Path: "/api/x", Lane: laneOther},
				{Method: "GET", Path: "/api/x", Lane: laneAPI},
			},
			reqs: []req{
				{"GET", "/api/x", laneAPI},
				{"POST", "/api/x", laneOther},
				{"HEAD", "/api/x", laneOther},
			},
		},
		{
			name: "specific method beats any method, glob",
			routes: []Route{
				{Method: "*", Path: "/api/*", Lane: laneOther},
				{Method: "POST", Path: "/api/*", Lane: laneSlow},
			},
			reqs: []req{{"POST", "/api/save", laneSlow}, {"GET", "/api/save", laneOther}},
		},
		{
			name: "full tie: earlier route wins",
			routes: []Route{
				{Method: "GET", Path: "/a/*x", Lane: laneFast},
				{Method: "GET", Path: "/a/*x*", Lane: laneSlow},
			},
			reqs: []req{{"GET", "/a/zx", laneFast}, {"GET", "/a/xz", laneSlow}},
		},
		{
			name:   "suffix glob",
			routes: []Route{{Method: "GET", Path: "/*.png", Lane: laneImg}},
			reqs: []req{
				{"GET", "/a/b/c.png", laneImg},
				{"GET", "/a.png", laneImg},
				{"GET", "/.png", laneImg},
				{"GET", "/a.png.txt", laneDefault},
				{"GET", "/png", laneDefault},
				{"POST", "/a.png", laneDefault},
			},
		},
		{
			name:   "trailing star matches empty",
			routes: []Route{{Method: "GET", Path: "/demo/sleep*", Lane: laneSlow}},
			reqs: []req{
				{"GET", "/demo/sleep", laneSlow},
				{"GET", "/demo/sleeper", laneSlow},
				{"GET", "/demo/sleep/5", laneSlow},
				{"GET", "/demo/slee", laneDefault},
			},
		},
		{
			name: "several stars",
			routes: []Route{
				{Method: "*", Path: "/*/a*b/*.json", Lane: laneAPI},
				{Method: "*", Path: "/x**y", Lane: laneOther},
			},
			reqs: []req{
				{"GET", "/v1/ab/c.json", laneAPI},
				{"GET", "/v1/a-b/c/d.json", laneAPI},
				{"GET", "/v1/ba/c.json", laneDefault},
				{"GET", "/xy", laneOther},
				{"GET", "/x/y", laneOther},
				{"GET", "/yx", laneDefault},
			},
		},
		{
			name: "dynamic overrides more specific static",
			routes: []Route{
				{Method: "GET", Path: "/report/daily", Lane: laneFast},
				{Method: "GET", Path: "/report/*", Lane: laneFast},
				{Method: "*", Path: "/*", Lane: laneSlow, Dynamic: true},
			},
			reqs: []req{
				{"GET", "/report/daily", laneSlow},
				{"GET", "/report/x", laneSlow},
			},
		},
		{
			name: "dynamic repeats a static pattern",
			routes: []Route{
				{Method: "GET", Path: "/report", Lane: laneFast},
				{Method: "GET", Path: "/report", Lane: laneSlow, Dynamic: true},
				{Method: "GET", Path: "/other", Lane: laneFast},
			},
			reqs: []req{{"GET", "/report", laneSlow}, {"GET", "/other", laneFast}},
		},
		{
			name: "specificity applies within dynamic routes",
			routes: []Route{
				{Method: "GET", Path: "/a/*", Lane: laneOther, Dynamic: true},
				{Method: "GET", Path: "/a/b", Lane: laneSlow, Dynamic: true},
				{Method: "GET", Path: "/a/b/*", Lane: laneFast, Dynamic: true},
			},
			reqs: []req{
				{"GET", "/a/b", laneSlow},
				{"GET", "/a/b/c", laneFast},
				{"GET", "/a/c", laneOther},
			},
		},
		{
			name:   "unmatched goes to default",
			routes: []Route{{Method: "GET", Path: "/static/*", Lane: laneStatic}},
			reqs: []req{
				{"GET", "/dynamic", laneDefault},
				{"GET", "", laneDefault},
				{"GET", "/", laneDefault},
				{"", "/static/x", laneDefault},
			},
		},
		{
			name:   "HEAD is not GET",
			routes: []Route{{Method: "GET", Path: "/page", Lane: laneFast}, {Method: "GET", Path: "/g*", Lane: laneFast}},
			reqs: []req{
				{"GET", "/page", laneFast},
				{"HEAD", "/page", laneDefault},
				{"HEAD", "/g", laneDefault},
			},
		},
		{
			name:   "methods and paths are case-sensitive",
			routes: []Route{{Method: "GET", Path: "/Page", Lane: laneFast}},
			reqs:   []req{{"get", "/Page", laneDefault}, {"GET", "/page", laneDefault}},
		},
		{
			name:   "empty route list",
			routes: nil,
			reqs:   []req{{"GET", "/", laneDefault}, {"POST", "/anything", laneDefault}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile(tt.routes, laneDefault)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.reqs {
				if got := tab.Match([]byte(r.method), []byte(r.path)); got != r.lane {
					t.Errorf("%s %s: lane %d, want %d", r.method, r.path, got, r.lane)
				}
			}
		})
	}
}

func TestMatchRoute(t *testing.T) {
	routes := []Route{
		{Method: "*", Path: "/*", Lane: 1},
		{Method: "GET", Path: "/static/*", Lane: 2},
		{Method: "GET", Path: "/", Lane: 3},
	}
	tab, err := Compile(routes, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, path string
		lane, route  int
	}{
		{"GET", "/static/a", 2, 1},
		{"GET", "/", 3, 2},
		{"POST", "/", 1, 0},
		{"GET", "", 7, -1},
	} {
		lane, route := tab.MatchRoute([]byte(tt.method), []byte(tt.path))
		if lane != tt.lane || route != tt.route {
			t.Errorf("%s %q: (lane %d, route %d), want (%d, %d)", tt.method, tt.path, lane, route, tt.lane, tt.route)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		want   error
	}{
		{"empty method", []Route{{Method: "", Path: "/"}}, ErrInvalidRoute},
		{"lowercase method", []Route{{Method: "get", Path: "/"}}, ErrInvalidRoute},
		{"method with digit", []Route{{Method: "GET2", Path: "/"}}, ErrInvalidRoute},
		{"method with star", []Route{{Method: "G*", Path: "/"}}, ErrInvalidRoute},
		{"empty path", []Route{{Method: "GET", Path: ""}}, ErrInvalidRoute},
		{"relative path", []Route{{Method: "GET", Path: "static/*"}}, ErrInvalidRoute},
		{"path starting with star", []Route{{Method: "GET", Path: "*.png"}}, ErrInvalidRoute},
		{"negative lane", []Route{{Method: "GET", Path: "/", Lane: -1}}, ErrInvalidRoute},
		{"duplicate exact", []Route{{Method: "GET", Path: "/a", Lane: 1}, {Method: "GET", Path: "/a", Lane: 2}}, ErrDuplicateRoute},
		{"duplicate glob", []Route{{Method: "*", Path: "/a/*", Lane: 1}, {Method: "*", Path: "/a/*", Lane: 1}}, ErrDuplicateRoute},
		{"duplicate dynamic", []Route{{Method: "*", Path: "/a", Dynamic: true}, {Method: "*", Path: "/a", Dynamic: true}}, ErrDuplicateRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile(tt.routes, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tab != nil {
				t.Error("got a table along with the error")
			}
			// The message names the offending pattern for the admin API and logs.
			last := tt.routes[len(tt.routes)-1]
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", last.String())) {
				t.Errorf("error %q does not name the route %q", err, last.String())
			}
		})
	}

	// Not duplicates: differing method, path or group.
	ok := []Route{
		{Method: "GET", Path: "/a"},
		{Method: "HEAD", Path: "/a"},
		{Method: "*", Path: "/a"},
		{Method: "GET", Path: "/a/"},
		{Method: "GET", Path: "/a", Dynamic: true},
	}
	if _, err := Compile(ok, 0); err != nil {
		t.Errorf("distinct routes refused: %v", err)
	}
}

func TestRoutesIsACopy(t *testing.T) {
	in := []Route{{Method: "GET", Path: "/a", Lane: 1}, {Method: "*", Path: "/b/*", Lane: 2, Dynamic: true}}
	tab, err := Compile(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Lane = 9 // the caller's slice no longer affects the table
	got := tab.Routes()
	if len(got) != 2 || got[0] != (Route{Method: "GET", Path: "/a", Lane: 1}) || got[1] != (Route{Method: "*", Path: "/b/*", Lane: 2, Dynamic: true}) {
		t.Fatalf("Routes() = %+v", got)
	}
	got[1].Lane = 9
	if tab.Routes()[1].Lane != 2 || tab.Match([]byte("GET"), []byte("/a")) != 1 {
		t.Error("Routes() exposes the table's own slice")
	}

	empty, err := Compile(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := empty.Routes(); r == nil || len(r) != 0 {
		t.Errorf("empty table Routes() = %#v, want empty non-nil", r)
	}
}

// referenceMatch picks the best route by scanning every route and applying
// the specificity rules literally, with the reference glob matcher.
func referenceMatch(routes []Route, defaultLane int, method, path string) (lane, route int) {
	best := -1
	better := func(a, b Route) bool { // a more specific than b
		if a.Dynamic != b.Dynamic {
			return a.Dynamic
		}
		ae, be := !strings.Contains(a.Path, "*"), !strings.Contains(b.Path, "*")
		if ae != be {
			return ae
		}
		if !ae {
			ap, bp := strings.Index(a.Path, "*"), strings.Index(b.Path, "*")
			if ap != bp {
				return ap > bp
			}
			al, bl := len(a.Path)-strings.Count(a.Path, "*"), len(b.Path)-strings.Count(b.Path, "*")
			if al != bl {
				return al > bl
			}
		}
		return a.Method != "*" && b.Method == "*"
	}
	for i, r := range routes {
		if r.Method != "*" && r.Method != method {
			continue
		}
		if !refGlob(r.Path, path) {
			continue
		}
		if best < 0 || better(r, routes[best]) {
			best = i
		}
	}
	if best < 0 {
		return defaultLane, -1
	}
	return routes[best].Lane, best
}

// TestMatchAgainstReference compiles random tables and checks every decision
// against referenceMatch, covering the bucketing and ordering together.
func TestMatchAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	methods := []string{"*", "GET", "POST", "HEAD"}
	alphabet := "ab/*."
	randPath := func(stars bool) string {
		var sb strings.Builder
		sb.WriteByte('/')
		for n := rng.IntN(7); n > 0; n-- {
			c := alphabet[rng.IntN(len(alphabet))]
			if c == '*' && !stars {
				c = 'a'
			}
			sb.WriteByte(c)
		}
		return sb.String()
	}
	for iter := 0; iter < 300; iter++ {
		var routes []Route
		seen := map[string]bool{}
		for n := rng.IntN(20); n > 0; n-- {
			r := Route{
				Method:  methods[rng.IntN(len(methods))],
				Path:    randPath(true),
				Lane:    rng.IntN(5) + 1,
				Dynamic: rng.IntN(4) == 0,
			}
			k := fmt.Sprint(r.Dynamic, r.String())
			if seen[k] {
				continue
			}
			seen[k] = true
			routes = append(routes, r)
		}
		tab, err := Compile(routes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 100; j++ {
			method := methods[1+rng.IntN(len(methods)-1)]
			path := randPath(false)
			if j%10 == 0 {
				path = "" // not something fasthttp hands us, but must not panic
			}
			wantLane, wantRoute := referenceMatch(routes, 0, method, path)
			lane, route := tab.MatchRoute([]byte(method), []byte(path))
			if lane != wantLane || route != wantRoute {
				t.Fatalf("routes %v\n%s %q: (lane %d, route %d), want (%d, %d)", routes, method, path, lane, route, wantLane, wantRoute)
			}
		}
	}
}
